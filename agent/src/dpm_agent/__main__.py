"""`dpm-agent [--config /etc/dpm-agent.toml]`: run until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from dpm_agent.client import Agent
from dpm_agent.config import AgentConfig
from dpm_agent.power import driver_for


async def _main(config: AgentConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    agent = Agent(config, power=driver_for(config, stop), restart=_reexec)  # the composition: config -> driver
    await agent.run(stop)


def _reexec() -> None:
    """The agent after its own upgrade: this process replaced by the same command line, which now
    runs the new code (the same interpreter, arguments and environment)."""
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606 -- argv as started, no shell


def main() -> None:
    parser = argparse.ArgumentParser(prog="dpm-agent")
    parser.add_argument("--config", type=Path, default=Path("/etc/dpm-agent.toml"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_main(AgentConfig.load(args.config)))


if __name__ == "__main__":
    main()
