"""The forced crash point of the fault tests is off unless set to its one test value (issue 21)."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from dpm_scheduler.adapters.crashpoint import BEFORE_WAKE, crash_point
from dpm_scheduler.domain.effects import Shutdown, Wake
from dpm_scheduler.settings import SchedulerSettings


def test_off_by_default_and_only_the_test_value_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DPM_SCHEDULER_TEST_CRASH_POINT", raising=False)
    assert SchedulerSettings().scheduler_test_crash_point == ""
    assert crash_point("") is None  # production: the drain gets no hook at all
    with pytest.raises(ValidationError):
        SchedulerSettings(scheduler_test_crash_point="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown test crash point"):
        crash_point("after-wake")
    monkeypatch.setenv("DPM_SCHEDULER_TEST_CRASH_POINT", BEFORE_WAKE)
    assert SchedulerSettings().scheduler_test_crash_point == BEFORE_WAKE
    assert callable(crash_point(BEFORE_WAKE))
    assert "TEST ONLY" in (SchedulerSettings.model_fields["scheduler_test_crash_point"].description or "")


def test_the_hook_ignores_everything_but_an_executions_wake_up() -> None:
    kill = crash_point(BEFORE_WAKE)
    assert kill is not None
    kill(Wake(uuid.uuid4()))  # an operator's power-on: no crash (the test targets a run's wake-up)
    kill(Shutdown(uuid.uuid4(), uuid.uuid4()))
