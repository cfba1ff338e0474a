"""dpm scheduler service: the execution process manager: timers, power-on, concurrency."""
