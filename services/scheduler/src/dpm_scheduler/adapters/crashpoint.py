"""A forced crash point for the fault tests (issue 21), never for production: with
``DPM_SCHEDULER_TEST_CRASH_POINT=before-wake`` the process SIGKILLs itself after a wake-up's
decision committed and the drain leased it, before the magic packet is sent -- exactly the window a
crash must not lose a wake in. Off by default; any other value is refused at start."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

from dpm_scheduler.domain.effects import Effect, Wake

log = logging.getLogger(__name__)

BEFORE_WAKE = "before-wake"


def crash_point(name: str) -> Callable[[Effect], None] | None:
    """The hook the effect drain calls before each effect; None when no crash point is set."""
    if not name:
        return None
    if name != BEFORE_WAKE:
        raise ValueError(f"unknown test crash point {name!r} (only {BEFORE_WAKE!r})")
    log.warning("TEST ONLY: crash point %s is set; this scheduler kills itself before its first wake-up", name)

    def kill(effect: Effect) -> None:
        if isinstance(effect, Wake) and effect.execution_id is not None:
            log.warning("TEST ONLY: crash point %s reached for %s: SIGKILL", name, effect.execution_id)
            os.kill(os.getpid(), signal.SIGKILL)

    return kill
