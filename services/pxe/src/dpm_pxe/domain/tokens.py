"""The deploy token of an execution (pure): derived from a key, the execution, the MAC and the
client's address (HMAC), so a firmware retry of the same client gets the same token again and the
token itself is never stored -- only its hash; and who keeps it once it was won (``adapters.tokens``
decides the winner in the database)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Grant:
    """The answer for one script fetch: a token, or why there is none."""

    token: str | None
    refused: str = ""


@dataclass(frozen=True)
class Holder:
    """Who won an execution's token: the client (MAC and address) and the token's hash."""

    mac: str
    client_ip: str
    token_sha256: str


def derive(key: bytes, execution_id: uuid.UUID, mac: str, client_ip: str) -> str:
    digest = hmac.new(key, f"{execution_id}|{mac}|{client_ip}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def regrant(holder: Holder | None, execution_id: uuid.UUID, mac: str, client_ip: str, token: str) -> Grant:
    """The answer to a fetch that did not win the token: the same token for the client that holds it
    (a firmware retry), none for anybody else -- nor for the holder when the key changed."""
    same_client = holder is not None and (holder.mac, holder.client_ip) == (mac, client_ip)
    if holder is not None and same_client and hmac.compare_digest(holder.token_sha256, sha256(token)):
        return Grant(token)
    if same_client:
        return Grant(None, f"execution {execution_id}'s token was issued under another key (pxe restarted?)")
    return Grant(None, f"execution {execution_id}'s deploy environment was handed to another client")
