"""The gateway's I/O: its tables and the machine directory (``store``), the live sessions it holds
and their hints over NATS (``sessions``), and operator commands relayed from NATS to an agent
(``commands``). Decisions come from ``domain``."""
