"""The console's admin pages (issue 20): settings, users and API tokens, and the audit log, one
module each (admin_*.py), their routers included here. The pages open for administrators only (the
API's own DPM-E404 page for anyone else); every action calls the REST route's own function with the
role that route declares (``res_kit``)."""

from __future__ import annotations

from fastapi import APIRouter

from dpm_api.console import admin_audit, admin_settings, admin_users

router = APIRouter(include_in_schema=False)
for _module in (admin_settings, admin_users, admin_audit):
    router.include_router(_module.router)
