"""Composition root of the api service: routes, projections, session and login-throttling policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from dpm_api import auth, boot, deploy_auth, live, requestmeta, scenarios, source_offers, throttle
from dpm_api.bootstrap_token import BootstrapToken, BootstrapTokenUses, RevokedBootstrapTokens, warn_without_admin
from dpm_api.console import routes as console_routes
from dpm_api.domain.bootstrap_token import Lifetime
from dpm_api.domain.throttle import LoginPolicies, Policy
from dpm_api.images import DiskLayouts, ImageList, StoreSpace
from dpm_api.projections import Accounts, GroupList, MachineList
from dpm_api.rollouts import RolloutList
from dpm_api.routes import admin, agents, groups, machines, packages, users
from dpm_api.routes import auth as auth_routes
from dpm_api.routes import boot as boot_routes
from dpm_api.routes import deploy as deploy_routes
from dpm_api.routes import deploy_logs as deploy_log_routes
from dpm_api.routes import images as image_routes
from dpm_api.routes import rollouts as rollout_routes
from dpm_api.routes import scenarios as scenario_routes
from dpm_api.routes import schedules as schedule_routes
from dpm_api.routes import sessions as session_routes
from dpm_api.routes import sources as source_routes
from dpm_api.routes import updates as update_routes
from dpm_api.runs import ScenarioList
from dpm_api.schedules import ScheduleList
from dpm_api.sessions import MulticastSessions
from dpm_api.settings import ApiSettings
from dpm_api.sources import SourceList
from dpm_api.updates import UpdateHistory
from dpm_runtime.catalog import Inventories, PackageCatalog
from dpm_runtime.service import Runtime, Service, Wiring
from dpm_schemas import text

NAME = "api"


def own_imager_url(settings: ApiSettings) -> str:
    """Where the api itself calls the imager: from settings only, never from a request -- a Host
    header must not aim the api's token anywhere (DPM_API_IMAGER_INTERNAL_URL, DPM_API_IMAGER_URL,
    else the imager beside us on DPM_HTTP_HOST)."""
    configured = settings.api_imager_internal_url or settings.api_imager_url
    if configured:
        return configured.rstrip("/")
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "") else settings.http_host
    host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
    return f"http://{host}:{settings.api_imager_port}"


def _data_planes(app: FastAPI, settings: ApiSettings) -> None:
    """Where clients send image chunks and package content, and how long their tokens last."""
    app.state.imager_url = settings.api_imager_url
    app.state.imager_port = settings.api_imager_port
    app.state.own_imager_url = own_imager_url(settings)
    app.state.transfer_ttl = settings.api_transfer_ttl
    app.state.backup_lease = settings.api_backup_lease
    app.state.updater_url = settings.api_updater_url
    app.state.updater_port = settings.api_updater_port
    app.state.package_upload_ttl = settings.api_package_upload_ttl
    app.state.update_history_keep = settings.api_update_history_keep


# the REST API's routers, then the web console's pages (at / and /console, docs/console.md)
ROUTERS = (
    machines, groups, auth_routes, users, agents, admin, boot_routes, deploy_routes, scenario_routes,
    schedule_routes, session_routes, image_routes, packages, update_routes, source_routes, rollout_routes,
    deploy_log_routes,
)  # fmt: skip


def create_app(settings: ApiSettings) -> FastAPI:
    # every append of a request carries its correlation id, span and actor (requestmeta.py)
    app = FastAPI(
        title="dpm",
        version="0.1.0",
        description="dpm deployment manager API",
        dependencies=[Depends(requestmeta.bind_request)],
    )
    token = settings.api_token.get_secret_value() if settings.api_token and token_usable(settings) else None
    app.state.api_token = token
    app.state.bootstrap_token = BootstrapToken(token, Lifetime(max_age=timedelta(seconds=settings.api_token_max_age)))
    app.state.runtime = None
    _security_state(app, settings)
    app.state.pxe_url = settings.api_pxe_url
    app.state.pxe_token = settings.api_pxe_token.get_secret_value() if settings.api_pxe_token else None
    app.state.deploy_check_address = settings.api_deploy_check_address
    _data_planes(app, settings)
    for routes in ROUTERS:
        app.include_router(routes.router)
    app.include_router(console_routes.router)  # the web console's pages, at / and /console (docs/console.md)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = text.refusal(exc.errors())  # DPM-E005 for control characters, else DPM-E100
        return JSONResponse({"error": err.to_dict()}, status_code=err.error.http_status)

    return app  # the body limit (DPM_API_MAX_BODY, chunked or not) is the runtime's, for every service


def _security_state(app: FastAPI, settings: ApiSettings) -> None:
    """Session lifetimes, login throttling, the password hasher and the clock the routes read."""
    app.state.clock = lambda: datetime.now(UTC)
    app.state.sessions = auth.SessionPolicy(
        idle=timedelta(seconds=settings.api_session_idle_timeout),
        max_age=timedelta(seconds=settings.api_session_max_age),
    )
    window, lockout = timedelta(seconds=settings.api_login_window), timedelta(seconds=settings.api_login_lockout)
    app.state.login_policies = LoginPolicies(
        pair=Policy(settings.api_login_max_failures, window, lockout),
        source=Policy(settings.api_login_max_attempts_per_source, window, lockout),
        user=Policy(
            settings.api_login_max_failures_per_user, window, timedelta(seconds=settings.api_login_user_lockout)
        ),
    )
    app.state.hasher = auth.Hasher(settings.api_login_concurrency)


def token_usable(settings: ApiSettings) -> bool:
    return settings.api_token is not None and settings.api_token_enabled


def bootstrap(settings: ApiSettings) -> Service:
    def wire(rt: Runtime) -> Wiring:
        app.state.live = feed = live.LiveFeed()  # one per process: every execution stream reads from it
        return Wiring(
            ddl=[*auth.DDL, *throttle.DDL, *boot.DDL, *scenarios.DDL, *deploy_auth.DDL],
            projections=[
                MachineList(),
                GroupList(),
                Accounts(),
                ScenarioList(),
                live.LiveExecutionList(feed),
                ScheduleList(),
                boot.DeployTokens(),
                boot.NetbootPending(),
                ImageList(),
                DiskLayouts(),
                StoreSpace(),
                PackageCatalog("api", "packages"),
                Inventories("api", "inventories"),
                UpdateHistory(settings.api_update_history_keep),
                RolloutList(),
                SourceList(),
                RevokedBootstrapTokens(),
                BootstrapTokenUses(),
                MulticastSessions(),
            ],
            consumers=[
                *boot.router.bind(eventlog=rt.eventlog, max_discovered=settings.api_discovery_max_machines),
                *source_offers.router.bind(eventlog=rt.eventlog),
            ],
            tasks=[feed.run, *([] if token_usable(settings) else [warn_without_admin])],
        )

    app = create_app(settings)
    return Service(
        name=NAME, settings=settings, port=settings.api_port, app=app, wire=wire, max_body=settings.api_max_body
    )
