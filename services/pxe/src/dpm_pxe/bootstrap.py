"""Composition root of the pxe service: the only place that picks implementations."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from ipaddress import IPv4Address

from fastapi import FastAPI
from pydantic import SecretStr

from dpm_pxe import handlers, routes
from dpm_pxe.adapters.dhcp.leases import LeaseStore
from dpm_pxe.adapters.dhcp.server import DhcpServer, interface_ipv4
from dpm_pxe.adapters.recorder import BootRecorder
from dpm_pxe.adapters.routeradv import RouterAdvertiser
from dpm_pxe.adapters.sightings import DDL as SIGHTINGS_DDL
from dpm_pxe.adapters.sightings import Sightings
from dpm_pxe.adapters.state import DDL, SCHEMA, follow
from dpm_pxe.adapters.tftp.files import size
from dpm_pxe.adapters.tftp.server import TftpLimits, TftpServer
from dpm_pxe.adapters.tokens import DDL as TOKENS_DDL
from dpm_pxe.adapters.tokens import DeployTokens
from dpm_pxe.domain.bootstate import BootState
from dpm_pxe.domain.deployenv import missing
from dpm_pxe.domain.dhcp.pools import Pool
from dpm_pxe.domain.dhcp.proxy import BootConfig
from dpm_pxe.domain.throttle import DiscoveryLimiter
from dpm_pxe.projections import BootSettings, Netboot
from dpm_pxe.settings import PxeSettings
from dpm_runtime.directory import MachineDirectory
from dpm_runtime.service import Runtime, Service, Task, Wiring
from dpm_schemas import E

NAME = "pxe"


def bootstrap(settings: PxeSettings) -> Service:
    app = FastAPI(title="dpm pxe", version="0.1.0")
    app.include_router(routes.router)

    def wire(rt: Runtime) -> Wiring:
        state = BootState(default_mode=settings.pxe_dhcp_mode)
        recorder = BootRecorder(rt.pool, rt.eventlog, limiter=discovery_limiter(settings))
        leases = LeaseStore(rt.pool, SCHEMA)
        sightings = Sightings(
            rt.pool,
            window=settings.pxe_boot_window,
            mode=lambda: state.current.mode if settings.pxe_dhcp_enabled else None,
        )
        tftp = tftp_server(settings, rt, sightings) if settings.pxe_tftp_enabled else None
        app.state.counters = lambda: {
            **recorder.limiter.stats(),
            "tftp_unacked_refused": tftp.unacked.refused if tftp else 0,
            # 1: the boot settings' deploy kernel or initramfs is not in the root (DPM-E430 on a netboot)
            "deploy_environment_missing": int(deploy_missing(settings, state)),
        }
        app.state.boot = boot_of(settings, rt, state, recorder, leases, sightings)
        tasks: list[Task] = [follow_settings(state)]
        if tftp is not None:
            tasks.append(tftp_task(settings, tftp))
        if settings.pxe_dhcp_enabled:
            tasks.append(dhcp_task(settings, config_provider(settings, state), leases, recorder, sightings))
        if settings.pxe_ipv6_router_advert and settings.pxe_dhcp_interface:
            tasks.append(advert_task(RouterAdvertiser(settings.pxe_dhcp_interface)))
        return Wiring(
            ddl=[*DDL, *TOKENS_DDL, *SIGHTINGS_DDL],
            projections=[MachineDirectory(SCHEMA), BootSettings(), Netboot()],
            tasks=tasks,
        )

    return Service(name=NAME, settings=settings, port=settings.pxe_port, app=app, wire=wire)


def boot_of(
    settings: PxeSettings,
    rt: Runtime,
    state: BootState,
    recorder: BootRecorder,
    leases: LeaseStore,
    sightings: Sightings,
) -> handlers.Boot:
    """The dependencies of the handlers the routes call."""
    return handlers.Boot(
        pool=rt.pool,
        state=state,
        recorder=recorder,
        leases=leases,
        root=settings.pxe_root,
        http_url=settings.pxe_http_url.rstrip("/") if settings.pxe_http_url else None,
        api_url=settings.pxe_api_url,
        api_port=settings.pxe_api_port,
        tokens=deploy_tokens(settings, rt),
        sightings=sightings,
        service_token=_secret(settings.pxe_service_token),
    )


def deploy_missing(settings: PxeSettings, state: BootState) -> bool:
    """Whether a netboot now would find no deploy environment: operators see it in /statusz before a run."""
    return missing(state.current, lambda path: size(settings.pxe_root, path)) is not None


def http_url(settings: PxeSettings, server_ip: IPv4Address | None) -> str:
    if settings.pxe_http_url:
        return settings.pxe_http_url.rstrip("/")
    return f"http://{server_ip or settings.http_host}:{settings.pxe_port}"


def config_provider(settings: PxeSettings, state: BootState) -> Callable[[], BootConfig]:
    """The DHCP configuration for the settings in force, rebuilt only when they change."""
    cache: dict[int, BootConfig] = {}

    def config() -> BootConfig:
        if (hit := cache.get(state.position)) is not None:
            return hit
        current = state.current
        server_ip = (
            IPv4Address(current.server_ip)
            if current.server_ip
            else settings.pxe_server_ip
            or (interface_ipv4(settings.pxe_dhcp_interface) if settings.pxe_dhcp_interface else None)
        )
        built = BootConfig(
            mode=current.mode,
            server_ip=server_ip,
            script_url=http_url(settings, server_ip) + "/boot/{mac}.ipxe?arch={arch}",
            files_url=http_url(settings, server_ip) + "/files",
            pools=tuple(Pool.from_range(r) for r in current.ranges),
        )
        cache.clear()
        cache[state.position] = built
        return built

    return config


def follow_settings(state: BootState) -> Task:
    """The DHCP listener's settings in memory follow the ``boot_settings`` projection's row."""

    async def run(rt: Runtime) -> None:
        await follow(state, rt.pool, rt.projections[BootSettings.name], rt.stop)

    return run


def dhcp_task(
    settings: PxeSettings,
    config: Callable[[], BootConfig],
    leases: LeaseStore,
    recorder: BootRecorder,
    sightings: Sightings,
) -> Task:
    async def serve(rt: Runtime) -> None:
        server = DhcpServer(
            config,
            leases=leases,
            interface=settings.pxe_dhcp_interface,
            on_boot=functools.partial(handlers.rom_booted, recorder=recorder),
            on_packet=sightings.dhcp_packet,
            tracer=rt.tracer,
        )
        try:
            await server.serve(settings.dhcp_host, (settings.pxe_dhcp_port, settings.pxe_dhcp_pxe_port), rt.stop)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise E.PORT_IN_USE(
                    service="pxe (DHCP)",
                    host=settings.dhcp_host,
                    port=f"{settings.pxe_dhcp_port}/{settings.pxe_dhcp_pxe_port}",
                    setting="DPM_PXE_DHCP_PORT (or DPM_PXE_DHCP_ENABLED=false)",
                ) from exc
            raise

    return serve


def advert_task(advertiser: RouterAdvertiser) -> Task:
    async def serve(rt: Runtime) -> None:
        await advertiser.serve(rt.stop)

    return serve


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


def deploy_tokens(settings: PxeSettings, rt: Runtime) -> DeployTokens:
    key = _secret(settings.pxe_deploy_token_key)
    return DeployTokens(rt.pool, rt.eventlog, key=key.encode() if key else None, idle=settings.pxe_deploy_token_ttl)


def discovery_limiter(settings: PxeSettings) -> DiscoveryLimiter:
    return DiscoveryLimiter(
        rate=settings.pxe_discovery_rate,
        burst=settings.pxe_discovery_burst,
        global_rate=settings.pxe_discovery_global_rate,
        global_burst=settings.pxe_discovery_global_burst,
    )


def tftp_server(settings: PxeSettings, rt: Runtime, sightings: Sightings) -> TftpServer:
    limits = TftpLimits(
        max_blksize=settings.pxe_tftp_max_blksize,
        max_window=settings.pxe_tftp_max_window,
        unacked_per_source=settings.pxe_tftp_unacked_per_source,
    )
    return TftpServer(settings.pxe_root, limits=limits, on_transfer=sightings.tftp_read, tracer=rt.tracer)


def tftp_task(settings: PxeSettings, server: TftpServer) -> Task:
    async def serve(rt: Runtime) -> None:
        settings.pxe_root.mkdir(parents=True, exist_ok=True)
        try:
            await server.serve(settings.tftp_host, settings.pxe_tftp_port, rt.stop)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise E.PORT_IN_USE(
                    service="pxe (TFTP)",
                    host=settings.tftp_host,
                    port=settings.pxe_tftp_port,
                    setting="DPM_PXE_TFTP_PORT",
                ) from exc
            raise

    return serve
