"""The console's resource pages (issue 20): images, packages and automatic updates, schedules and
network boot, one module each (res_*.py), their routers included here. Every action calls the REST
route's own function with the role that route declares (``res_kit``), so a page and the API refuse
alike, with the same codes."""

from __future__ import annotations

from fastapi import APIRouter

from dpm_api.console import res_boot, res_images, res_packages, res_schedules, res_updates

router = APIRouter(include_in_schema=False)
# res_updates' POST routes first: /console/packages/{package_id} must not shadow them (it is GET only)
for _module in (res_images, res_updates, res_packages, res_schedules, res_boot):
    router.include_router(_module.router)
