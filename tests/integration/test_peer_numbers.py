"""Numbers from peers that used to reach int()/float()/jsonb unchecked and answer 500 (or poison a
read model): each class now gets a 4xx with a code, and the peer can go on."""

from __future__ import annotations

import pytest

from dpm_agent.deploy.remote import TransferGrant
from dpm_runtime.testing.services import running

from .test_boot_security import _deploy_setup, _script, _token

pytestmark = pytest.mark.integration


async def test_a_disk_report_with_nan_or_infinity_is_refused(api_service, pxe_service, auth) -> None:
    """JSON says NaN, Infinity and 1e400 (inf) happily; PostgreSQL's jsonb takes none of them."""
    api = api_service()
    pxe = pxe_service(pxe_api_url=f"http://127.0.0.1:{api.port}")
    async with running(api, headers=auth) as a, running(pxe) as p:
        _machine, execution = await _deploy_setup(a, a.runtime.eventlog)
        bearer = {"Authorization": f"Bearer {_token(await _script(p))}"}
        for number in ("NaN", "Infinity", "1e400"):
            body = f'{{"execution_id": "{execution}", "disks": [{{"size": {number}}}]}}'
            r = await a.http.post(
                "/deploy/v1/disks", content=body, headers={**bearer, "Content-Type": "application/json"}
            )
            assert r.status_code == 422 and r.json()["error"]["code"] == "DPM-E169", (number, r.text)
        ok = await a.http.post("/deploy/v1/disks", json={"execution_id": str(execution), "disks": [{"size": 1}]},
                               headers=bearer)  # fmt: skip
        assert ok.status_code == 202, ok.text


async def test_an_overflowing_planned_size_is_refused(api_service, imager_service, auth) -> None:
    """planned_bytes x free factor was float arithmetic on an unbounded int: OverflowError, 500."""
    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    async with running(api, headers=auth) as a, running(imager) as i:
        answer = await a.http.post("/images/transfers", json={"image": "lab/huge", "direction": "backup"})
        grant = TransferGrant.from_json(answer.json())
        headers = {"Authorization": f"Bearer {grant.token}"}
        r = await i.http.post(f"/v1/transfers/{grant.transfer_id}/start", json={"planned_bytes": 10**309},
                              headers=headers)  # fmt: skip
        assert r.status_code == 422, r.text
        ok = await i.http.post(f"/v1/transfers/{grant.transfer_id}/start", json={"planned_bytes": 1}, headers=headers)
        assert ok.status_code == 200, ok.text
