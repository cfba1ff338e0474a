"""put_file of any size: the command names the updater's copy of the content (``Command.fetch``)
instead of carrying it. The target is judged before a byte is fetched; the download is the package
downloader's (3x the size free, ``Range`` resume, SHA-256 checked), into the agent's private cache,
and the file is then placed as a small one is (temp file beside the target, mode, atomic rename).
The fetched copy is removed afterwards, in a directory of the command's own: distributed files are
not kept twice, and a cut fetch is not resumed by another command."""

from __future__ import annotations

import asyncio
import shutil

from dpm_agent.commands import CommandRefused, check_target, inside, put_from
from dpm_agent.config import AgentConfig
from dpm_agent.packages.download import download
from dpm_schemas import DpmError, E
from dpm_schemas.agent_protocol import Command, CommandResult


async def put_fetched(cmd: Command, config: AgentConfig) -> CommandResult:
    fetch = cmd.fetch
    assert fetch is not None
    cache = config.packages_dir / "files" / str(cmd.id)  # its own: two puts of one file never share
    try:
        target = inside(cmd.path, config.allowed_paths)
        check_target(target)
        got = await download(fetch.url, token=fetch.token, sha256=fetch.sha256, size=fetch.size,
                             cache_dir=cache)  # fmt: skip
        await asyncio.to_thread(put_from, target, got, cmd.mode, config.allowed_paths)
    except (CommandRefused, OSError) as exc:
        return CommandResult(id=cmd.id, ok=False, code=E.AGENT_REFUSED.code, message=str(exc)[:1000])
    except DpmError as exc:  # no room (E230), a wrong hash (E231), refused (E232), gave up (E233)
        return CommandResult(id=cmd.id, ok=False, code=exc.code, message=exc.message[:1000])
    finally:
        await asyncio.to_thread(shutil.rmtree, cache, True)  # the fetched copy, or what a failure left
    return CommandResult(id=cmd.id, ok=True)
