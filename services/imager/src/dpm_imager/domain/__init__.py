"""The imager's pure rules: what a transfer's token may do now, when a use renews it, whether a
committed manifest is sound. No PostgreSQL, NATS or HTTP here, so every rule is unit-tested alone."""
