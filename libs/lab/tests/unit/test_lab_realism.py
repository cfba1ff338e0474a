"""The lab behaves like real machines, so its failures are dpm's: a machine that is on ignores
magic packets (the repeats of one wake never queue a phantom second boot), its ROM repeats DHCP
for about a minute, and its deploy environment retries a report that meets a 5xx or a lost
connection -- but not the api's "no" (4xx)."""

from __future__ import annotations

import asyncio
import itertools
import socket

import httpx
import pytest

from dpm_lab.deployenv import report, retry_delay
from dpm_lab.sim import Lab, LabConfig, SimMachine, discover_waits, fleet, magic_packet
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually


def test_the_rom_repeats_its_discover_for_about_a_minute_by_default() -> None:
    config = LabConfig(dhcp=("127.0.0.1", 1), tftp=("127.0.0.1", 2), wol_port=3)
    waits = list(discover_waits(config.rom_dhcp_seconds, first=config.timeout / 4))
    assert sum(waits) == pytest.approx(60.0) and waits[0] == 1.25
    assert all(b == min(2 * a, 8.0) for a, b in itertools.pairwise(waits[:-1]))  # doubling, capped
    assert len(list(discover_waits(0.3, first=1.25))) == 1


def test_a_report_retry_waits_longer_each_time_and_honours_retry_after() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert retry_delay(1, retry_after="3") == 3.0 and retry_delay(1, retry_after="120") == 5.0


async def test_a_report_is_retried_on_5xx_and_lost_connections_until_accepted() -> None:
    answers = iter([httpx.ConnectError("refused"), httpx.Response(503, headers={"Retry-After": "1"}),
                    httpx.Response(500), httpx.Response(200, json={})])  # fmt: skip
    seen, slept = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://api") as http:
        answer = await report(http, "/deploy/v1/steps", {}, {"status": "completed"}, sleep=sleep)
    assert answer.status_code == 200 and len(seen) == 4 and len(set(seen)) == 1
    assert slept == [0.5, 1.0, 2.0]


async def test_a_refused_report_is_not_repeated_and_an_outage_longer_than_the_budget_ends() -> None:
    calls, now = [], [0.0]

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(403 if request.url.path == "/refused" else 503)

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://api") as http:
        with pytest.raises(httpx.HTTPStatusError):
            await report(http, "/refused", {}, {}, sleep=sleep)
        with pytest.raises(TimeoutError, match="HTTP 503"):
            await report(http, "/down", {}, {}, budget=3.0, sleep=sleep, clock=lambda: now[0])
    assert calls.count("/refused") == 1 and calls.count("/down") == 3  # waits 0.5 + 1 fit in 3 s; + 2 does not


async def test_a_machine_that_is_on_ignores_magic_packets_and_one_that_is_off_wakes() -> None:
    machine = fleet(1)[0]
    config = LabConfig(
        dhcp=("127.0.0.1", free_port(udp=True)),  # nothing answers: the ROM gives up and the machine is off again
        tftp=("127.0.0.1", free_port(udp=True)),
        wol_port=free_port("0.0.0.0", udp=True),
        post_seconds=0.3,
        timeout=0.4,
        rom_dhcp_seconds=0.5,
    )
    stop, bound = asyncio.Event(), asyncio.Event()

    async def state(m: SimMachine) -> tuple[str, int, int]:
        return m.power, m.wakes, len(m.stages)

    async with httpx.AsyncClient() as http:
        task = asyncio.create_task(Lab([machine], config, http).run(stop, ready=bound.set))
        await asyncio.wait_for(bound.wait(), 5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as wire:
            for _ in range(3):  # a wake's repeated packets, all while the machine is in its self-test
                wire.sendto(magic_packet(machine.mac), ("127.0.0.1", config.wol_port))
            await eventually(lambda: state(machine), until=lambda s: s == ("off", 1, 1), timeout=5, what="one boot")
            await asyncio.sleep(1.0)  # no phantom second boot follows
            assert (machine.power, machine.wakes) == ("off", 1) and "no DHCP answer" in machine.stages[0]
            wire.sendto(magic_packet(machine.mac), ("127.0.0.1", config.wol_port))
            await eventually(lambda: state(machine), until=lambda s: s[1] == 2, timeout=5, what="woken again")
        stop.set()
        await task
