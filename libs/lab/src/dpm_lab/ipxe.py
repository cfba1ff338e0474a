"""What the lab's iPXE does with a script it fetched: a script that sleeps and chains to another URL
(pxe's "ask again" while its database is away) is run as iPXE runs it, until a real script comes."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urljoin

import httpx

CHAIN = re.compile(r"^chain\s+(?:--\S+\s+)*(\S+)", re.MULTILINE)
SLEEP = re.compile(r"^sleep\s+(\d+)", re.MULTILINE)


async def fetch_script(http: httpx.AsyncClient, url: str, *, budget: float) -> str:
    """The script iPXE ends up running: ``sleep``/``chain`` scripts followed for up to ``budget`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    while True:
        script = (await http.get(url)).text
        chained = CHAIN.search(script)
        if "\nkernel " in script or chained is None or loop.time() > deadline:
            return script
        pause = SLEEP.search(script)
        await asyncio.sleep(int(pause.group(1)) if pause else 0)
        url = urljoin(url, chained.group(1))
