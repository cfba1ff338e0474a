"""``python -m dpm_schemas jsonschema|errors [--write PATH]``: render generated documents."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dpm_schemas import errors, jsonschema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpm_schemas")
    parser.add_argument("document", choices=["jsonschema", "errors"])
    parser.add_argument("--write", type=Path, help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    text = jsonschema.render() if args.document == "jsonschema" else errors.render_markdown()
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
