"""The console's dashboard pages (being built for issue 20)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
