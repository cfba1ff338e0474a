"""The api's I/O that routes used to hold: SQL queries of its read models (one module per model)."""
