"""Enrolment tokens issued by an admin are single-use (or n-use) and expire; the gateway's shared
secret still works for labs; anything else is refused with DPM-E403."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running

from .conftest import ENROLMENT

pytestmark = pytest.mark.integration

FACTS = {"macs": ["52:54:0d:00:00:01"], "hostname": "new-box"}


async def test_enrolment_tokens_are_single_use_and_expire(api_service, gateway_service, auth) -> None:
    gateway = gateway_service()
    async with running(api_service(), headers=auth) as api, running(gateway) as gw:
        once = (await api.http.post("/agents/enrolment-tokens", json={})).json()
        short = (await api.http.post("/agents/enrolment-tokens", json={"expires_in": 0.5})).json()
        twice = (await api.http.post("/agents/enrolment-tokens", json={"uses": 2})).json()

        async def enrol(token: str, mac: str = FACTS["macs"][0]) -> httpx.Response:
            return await gw.http.post("/v1/enrol", json={"enrolment_token": token, "facts": {**FACTS, "macs": [mac]}})

        first = await eventually(
            lambda: enrol(once["token"]), until=lambda r: r.status_code == 200, what="the gateway learns the token"
        )
        assert first.json()["token"] and first.json()["machine_id"]
        again = await enrol(once["token"], "52:54:0d:00:00:02")
        assert again.status_code == 403 and again.json()["error"]["code"] == "DPM-E403"

        await asyncio.sleep(1.0)
        assert (await enrol(short["token"], "52:54:0d:00:00:03")).status_code == 403  # expired

        assert (await enrol(twice["token"], "52:54:0d:00:00:04")).status_code == 200
        assert (await enrol(twice["token"], "52:54:0d:00:00:05")).status_code == 200
        assert (await enrol(twice["token"], "52:54:0d:00:00:06")).status_code == 403

        assert (await enrol(ENROLMENT, "52:54:0d:00:00:07")).status_code == 200  # the shared secret
        assert (await enrol("dpme_guess", "52:54:0d:00:00:08")).status_code == 403
        viewer_denied = await api.http.post("/agents/enrolment-tokens", json={}, headers={"Authorization": "Bearer x"})
        assert viewer_denied.status_code == 401


async def test_an_unregistered_machine_enrolling_its_agent_is_registered_into_new_machines(
    api_service, gateway_service, auth
) -> None:
    smbios = uuid.uuid4()
    facts = {"macs": ["52:54:0d:00:10:01", "52:54:0d:00:10:02"], "smbios_uuid": str(smbios), "hostname": "db-07.lab"}
    async with running(api_service(), headers=auth) as api, running(gateway_service()) as gw:
        enrolled = await gw.http.post("/v1/enrol", json={"enrolment_token": ENROLMENT, "facts": facts})
        assert enrolled.status_code == 200

        async def registered() -> list:
            return [m for m in (await api.http.get("/machines")).json() if m["name"] == "db-07"]

        (machine,) = await eventually(registered, what="the enrolled machine registered")
        assert machine["machine_id"] == enrolled.json()["machine_id"]  # the id the agent was given
        assert machine["macs"] == facts["macs"] and machine["smbios_uuid"] == str(smbios)
        assert machine["group_name"] == "new-machines"
        # enrolling again (a reinstall) finds the registered machine: no second record; it now takes an
        # enrolment token bound to that machine (an unbound one may not replace its agent's token: issue 12)
        bound = await api.http.post("/agents/enrolment-tokens", json={"machine": "db-07"})
        again = await eventually(
            lambda: gw.http.post("/v1/enrol", json={"enrolment_token": bound.json()["token"], "facts": facts}),
            until=lambda r: r.status_code == 200,
            what="the gateway learns the bound token",
        )
        assert again.json()["machine_id"] == machine["machine_id"]
        assert len((await api.http.get("/machines")).json()) == 1
