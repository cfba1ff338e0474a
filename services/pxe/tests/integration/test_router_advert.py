"""IPv6 router solicitations on a lab network (``dpm_pxe.adapters.routeradv``): a solicitation from a
namespace, as iPXE sends one, is answered within a second by an advertisement that offers nothing
(no M/O flags, router lifetime 0, our MAC); a flood of them costs one advertisement a second; one
that came through a router (hop limit not 255) is not answered."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpm_pxe.adapters.routeradv import RouterAdvertiser
from dpm_runtime.testing import eventually, netlab

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2")]

CLIENT = Path(__file__).with_name("rs_client.py")


async def solicit(lab: netlab.NetLab, host: netlab.LabHost, count: int, hops: int, listen: float) -> dict:
    proc = lab.popen(host, [sys.executable, str(CLIENT), str(count), str(hops), str(listen)], stdout=-1, text=True)
    out, _ = await asyncio.to_thread(proc.communicate, timeout=30)  # the advertiser answers on this loop
    assert proc.returncode == 0, out
    return json.loads(out)


async def link_local(interface: str) -> bool:
    shown = subprocess.run(
        ["ip", "-6", "addr", "show", "dev", interface, "scope", "link"], capture_output=True, text=True
    )
    return "inet6" in shown.stdout and "tentative" not in shown.stdout


async def test_solicitations_get_one_empty_advertisement_a_second() -> None:
    with netlab.NetLab(hosts_wanted=1) as lab:
        (host,) = lab.hosts
        await eventually(lambda: link_local(lab.bridge), what="the bridge's link-local address")  # our source
        # the namespace's own kernel solicits when its link comes up: only the client's count here
        quiet = ["ip", "netns", "exec", host.netns, "sysctl", "-qw", "net.ipv6.conf.eth0.router_solicitations=0"]
        subprocess.run(quiet, check=True)
        advertiser, stop = RouterAdvertiser(lab.bridge), asyncio.Event()
        served, began = asyncio.create_task(advertiser.serve(stop)), time.monotonic()
        try:
            await asyncio.sleep(0)  # the socket is open before the first solicitation
            mac = Path(f"/sys/class/net/{lab.bridge}/address").read_text().strip()

            one = await solicit(lab, host, count=1, hops=255, listen=2.5)
            (ad,) = one["heard"]
            assert ad["after"] < 1.0 and ad["flags"] == 0 and ad["lifetime"] == 0 and ad["mac"] == mac
            assert ad["hop_limit"] == 0 and ad["source"].startswith("fe80:")

            flood = await solicit(lab, host, count=200, hops=255, listen=2.5)
            assert 1 <= len(flood["heard"]) <= 3, flood  # paced: one a second however many solicit

            await asyncio.sleep(1.1)  # past the pacing gap, so silence below is the hop-limit check
            routed = await solicit(lab, host, count=3, hops=64, listen=1.5)
            assert routed["heard"] == []
            assert advertiser.solicitations >= 201  # every valid one was read
            assert advertiser.sent <= time.monotonic() - began + 1  # and answered at most once a second
        finally:
            stop.set()
            await asyncio.wait_for(served, timeout=5)
