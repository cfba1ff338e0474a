"""The imager's data plane over HTTP: chunks and manifests, each call authorised by the token of one
transfer (transfers.py). Thin routes: parse, call chunks.py or commit.py, shape a typed answer."""

from __future__ import annotations

from fastapi import APIRouter

from dpm_imager.routes import backup, restore

__all__ = ["router"]

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])
router.include_router(backup.router)
router.include_router(restore.router)
