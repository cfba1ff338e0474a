"""Composition root of the api service: routes, the machine list projection, request limits."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from dpm_api import auth, boot, scenarios
from dpm_api.images import DiskLayouts, ImageList
from dpm_api.projections import Accounts, GroupList, MachineList
from dpm_api.routes import admin, agents, groups, machines, users
from dpm_api.routes import auth as auth_routes
from dpm_api.routes import boot as boot_routes
from dpm_api.routes import deploy as deploy_routes
from dpm_api.routes import images as image_routes
from dpm_api.routes import scenarios as scenario_routes
from dpm_api.routes import schedules as schedule_routes
from dpm_api.runs import ExecutionList, ScenarioList
from dpm_api.schedules import ScheduleList
from dpm_api.settings import ApiSettings
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_schemas import E

NAME = "api"


def create_app(settings: ApiSettings) -> FastAPI:
    app = FastAPI(title="dpm", version="0.1.0", description="dpm deployment manager API")
    app.state.api_token = settings.api_token.get_secret_value() if settings.api_token else None
    app.state.runtime = None
    app.state.session_idle_timeout = settings.api_session_idle_timeout
    app.state.pxe_url = settings.api_pxe_url
    app.state.imager_url = settings.api_imager_url
    app.state.imager_port = settings.api_imager_port
    app.state.transfer_ttl = settings.api_transfer_ttl
    app.include_router(machines.router)
    app.include_router(groups.router)
    app.include_router(auth_routes.router)
    app.include_router(users.router)
    app.include_router(agents.router)
    app.include_router(admin.router)
    app.include_router(boot_routes.router)
    app.include_router(deploy_routes.router)
    app.include_router(scenario_routes.router)
    app.include_router(schedule_routes.router)
    app.include_router(image_routes.router)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        err = E.INVALID_REQUEST(reason=f"{where}: {first.get('msg', 'invalid')}")
        return JSONResponse({"error": err.to_dict()}, status_code=err.error.http_status)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.api_max_body):
            err = E.INVALID_REQUEST(reason=f"body larger than {settings.api_max_body} bytes")
            return JSONResponse({"error": err.to_dict()}, status_code=413)
        return await call_next(request)

    return app


def bootstrap(settings: ApiSettings) -> Service:
    def wire(rt: Runtime) -> Wiring:
        return Wiring(
            ddl=[*auth.DDL, *boot.DDL, *scenarios.DDL],
            projections=[
                MachineList(),
                GroupList(),
                Accounts(),
                ScenarioList(),
                ExecutionList(),
                ScheduleList(),
                boot.DeployTokens(),
                ImageList(),
                DiskLayouts(),
            ],
            consumers=[boot.boot_consumer(rt.eventlog)],
        )

    return Service(name=NAME, settings=settings, port=settings.api_port, app=create_app(settings), wire=wire)
