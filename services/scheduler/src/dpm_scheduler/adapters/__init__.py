"""I/O only: SQL stores and queries, the Wake-on-LAN driver, agent commands, the effect runner."""
