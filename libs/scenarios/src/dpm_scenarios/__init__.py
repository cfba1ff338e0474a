"""The execution vocabulary and the start/session rules (pure), imported by the scheduler, which
acts on them, and by the api, whose execution list and dry-run preview show them."""

from dpm_scenarios.planning import Refuse, SessionStart, Start, plan_start, session_start
from dpm_scenarios.states import ACTIVE, ENDED, OPEN, ExecutionState, label, label_after, started_state, state_after

__all__ = [
    "ACTIVE",
    "ENDED",
    "OPEN",
    "ExecutionState",
    "Refuse",
    "SessionStart",
    "Start",
    "label",
    "label_after",
    "plan_start",
    "session_start",
    "started_state",
    "state_after",
]
