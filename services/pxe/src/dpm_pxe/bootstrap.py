"""Composition root of the pxe service: the only place that picks implementations."""

from __future__ import annotations

import errno

from fastapi import FastAPI

from dpm_pxe.settings import PxeSettings
from dpm_pxe.tftp.server import TftpLimits, TftpServer
from dpm_runtime.directory import directory_consumer, directory_ddl
from dpm_runtime.service import Runtime, Service, Task, Wiring
from dpm_schemas import E

NAME = "pxe"
SCHEMA = "pxe"


def bootstrap(settings: PxeSettings) -> Service:
    def wire(_rt: Runtime) -> Wiring:
        tasks: list[Task] = []
        if settings.pxe_tftp_enabled:
            tasks.append(tftp_task(settings))
        return Wiring(ddl=directory_ddl(SCHEMA), consumers=[directory_consumer(NAME, SCHEMA)], tasks=tasks)

    app = FastAPI(title="dpm pxe", version="0.1.0")
    return Service(name=NAME, settings=settings, port=settings.pxe_port, app=app, wire=wire)


def tftp_task(settings: PxeSettings) -> Task:
    async def serve(rt: Runtime) -> None:
        root = settings.pxe_tftp_root
        root.mkdir(parents=True, exist_ok=True)
        server = TftpServer(
            root, limits=TftpLimits(max_blksize=settings.pxe_tftp_max_blksize, max_window=settings.pxe_tftp_max_window)
        )
        try:
            await server.serve(settings.pxe_tftp_host, settings.pxe_tftp_port, rt.stop)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise E.PORT_IN_USE(
                    service="pxe (TFTP)",
                    host=settings.pxe_tftp_host,
                    port=settings.pxe_tftp_port,
                    setting="DPM_PXE_TFTP_PORT",
                ) from exc
            raise

    return serve
