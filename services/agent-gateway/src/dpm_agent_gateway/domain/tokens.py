"""Agent and enrolment tokens are kept as their SHA-256 only (pure): a stolen table holds no
credential, and a presented token is found by its hash."""

from __future__ import annotations

import hashlib


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
