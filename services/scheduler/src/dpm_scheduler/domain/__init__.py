"""The scheduler's pure domain: executions as frozen values, decisions as data (events to append,
the execution's next state, effects to run after the commit). Imports no I/O."""
