"""The execution engine: a process manager driving each scenario run per machine."""
