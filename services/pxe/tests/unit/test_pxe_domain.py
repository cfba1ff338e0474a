"""pxe's pure rules moved into ``domain`` (issue 13), table-driven: who keeps an execution's deploy
token, who may have a deploy environment pxe saw boot, a boot recorded once per window, and the
settings memory holds."""

from __future__ import annotations

import uuid

import pytest

from dpm_pxe.domain.bootstate import BootState
from dpm_pxe.domain.throttle import Repeats
from dpm_pxe.domain.tokens import Grant, Holder, derive, regrant, sha256
from dpm_pxe.domain.witness import admitted, unseen
from dpm_schemas.events import BootSettingsChanged
from dpm_schemas.events.boot import DhcpMode

KEY, RUN, MAC, IP = b"k" * 32, uuid.UUID(int=7), "52:54:00:00:00:01", "10.0.0.5"
TOKEN = derive(KEY, RUN, MAC, IP)


def test_a_token_is_derived_from_key_execution_mac_and_address() -> None:
    assert derive(KEY, RUN, MAC, IP) == TOKEN  # a firmware retry gets the same token
    others = {derive(b"x" * 32, RUN, MAC, IP), derive(KEY, uuid.UUID(int=8), MAC, IP),
              derive(KEY, RUN, "52:54:00:00:00:02", IP), derive(KEY, RUN, MAC, "10.0.0.6")}  # fmt: skip
    assert TOKEN not in others and len(others) == 4
    assert "=" not in TOKEN and len(sha256(TOKEN)) == 64


@pytest.mark.parametrize(
    ("holder", "mac", "ip", "token", "refused"),
    [
        (Holder(MAC, IP, sha256(TOKEN)), MAC, IP, TOKEN, ""),  # the holder again: the same token
        (Holder(MAC, IP, sha256("old")), MAC, IP, TOKEN, "another key"),  # the key changed since
        (Holder(MAC, IP, sha256(TOKEN)), MAC, "10.0.0.6", TOKEN, "another client"),
        (Holder(MAC, IP, sha256(TOKEN)), "52:54:00:00:00:02", IP, TOKEN, "another client"),
        (None, MAC, IP, TOKEN, "another client"),  # the row went (nothing to match)
    ],
)
def test_who_keeps_a_token_that_was_won(holder: Holder | None, mac: str, ip: str, token: str, refused: str) -> None:
    grant = regrant(holder, RUN, mac, ip, token)
    if refused:
        assert grant.token is None and refused in grant.refused
    else:
        assert grant == Grant(token)


@pytest.mark.parametrize(
    ("client", "seen", "watching", "ok"),
    [
        ("10.0.0.5", {"10.0.0.5"}, True, True),
        ("10.0.0.5", {"10.0.0.5", "10.0.0.9"}, False, True),
        ("10.0.0.6", {"10.0.0.5"}, True, False),
        ("10.0.0.6", {"10.0.0.5"}, False, False),  # seen elsewhere: refused whatever the mode
        ("10.0.0.6", set(), True, False),  # the listener takes part in every boot and saw none
        ("10.0.0.6", set(), False, True),  # mode off / no listener: nothing to bind to
    ],
)
def test_who_may_have_a_deploy_environment(client: str, seen: set[str], watching: bool, ok: bool) -> None:
    assert admitted(client, seen, watching=watching) is ok


def test_a_refusal_says_why() -> None:
    assert unseen({"10.0.0.5"}, 600) == "pxe did not see that MAC boot from this address"
    assert unseen(set(), 599.6) == "pxe saw no network boot of that MAC in the last 600 s"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([(0, "a"), (1, "a"), (29.9, "a"), (30, "a")], [True, False, False, True]),
        ([(0, "a"), (1, "b"), (2, "a"), (2, "b")], [True, True, False, False]),
        ([(0, "a"), ("forget", "a"), (1, "a")], [True, None, True]),
    ],
)
def test_a_boot_is_recorded_once_per_window(steps: list[tuple[object, str]], expected: list[bool | None]) -> None:
    clock = Clock()
    repeats = Repeats(window=30, clock=clock)
    got: list[bool | None] = []
    for at, key in steps:
        if at == "forget":
            got.append(repeats.forget(key))
            continue
        assert isinstance(at, int | float)
        clock.now = float(at)
        got.append(repeats.fresh(key))
    assert got == expected


def test_memory_holds_what_the_row_holds() -> None:
    state = BootState(default_mode=DhcpMode.PROXY)
    assert state.current.mode is DhcpMode.PROXY and state.position == 0
    full, off = BootSettingsChanged(mode=DhcpMode.FULL), BootSettingsChanged(mode=DhcpMode.OFF)
    for settings, position in [(full, 5), (full, 5), (off, 9), (full, 5), (None, 0)]:  # a rebuild may go back
        state.follow(settings, position)
    assert state.changed == [DhcpMode.FULL, DhcpMode.OFF, DhcpMode.FULL, DhcpMode.PROXY]
    assert state.settings is None and state.current.mode is DhcpMode.PROXY
