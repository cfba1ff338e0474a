"""Invalid data refused at the edge (issue 12): scenario parameters, kinds not implemented yet, image
name templates, MACs no NIC has, agent-reported addresses, cron expressions that never fire, and
CSV cells a spreadsheet would run as formulas."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from dpm_api.domain.csvfile import parse, render, spreadsheet_safe
from dpm_api.domain.scenarios import check_spec
from dpm_api.domain.view import MachineRow
from dpm_api.schedules import check_fires
from dpm_schemas.agent_protocol import Addresses, Facts
from dpm_schemas.errors import DpmError
from dpm_schemas.events.scenarios import ScenarioSpec
from dpm_schemas.ids import UnusableMac, normalize_mac


def code_of(spec: dict) -> str | None:
    try:
        check_spec(ScenarioSpec.model_validate(spec))
    except DpmError as exc:
        return exc.code
    return None


@pytest.mark.parametrize("seconds", ["inf", "-inf", "nan", "1e30", "604801", "-1", "soon"])
def test_simulated_seconds_must_be_finite_and_bounded(seconds: str) -> None:
    assert code_of({"kind": "simulated", "params": {"seconds": seconds}}) == "DPM-E114"


def test_valid_parameters_pass() -> None:
    assert code_of({"kind": "simulated", "params": {"seconds": "0.5"}}) is None
    assert code_of({"kind": "backup", "params": {"image": "backups/{machine}", "mode": "full", "disk": "2"}}) is None
    assert code_of({"kind": "restore", "params": {"image": "golden", "grow_gpt": "true"}}) is None
    assert code_of({"kind": "disk-check"}) is None


@pytest.mark.parametrize(
    "params",
    [{"image": "x", "mode": "most"}, {"image": "x", "disk": "0"}, {"image": "x", "colour": "blue"}, {}],
)
def test_imaging_parameters_are_checked_per_kind(params: dict) -> None:
    assert code_of({"kind": "backup", "params": params}) == "DPM-E114"


@pytest.mark.parametrize("image", ["../etc", "a/../b", "/abs", "a//b", "a b", "{foo}", "x/{machine}/.."])
def test_image_templates_are_refused_at_save_with_the_imagers_rule(image: str) -> None:
    assert code_of({"kind": "backup", "params": {"image": image}}) == "DPM-E162"


@pytest.mark.parametrize("kind", ["os-install", "firmware"])
def test_kinds_nobody_implements_are_refused_at_save(kind: str) -> None:
    assert code_of({"kind": kind}) == "DPM-E115"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "DPM-E114"),
        ({"packages": " , "}, "DPM-E282"),
        ({"packages": "x" * 64}, "DPM-E282"),
        ({"packages": "a", "when": "soon"}, "DPM-E282"),
        ({"packages": "a", "at": "2027-01-01T00:00:00Z"}, "DPM-E282"),  # at only with at-time
        ({"packages": "a", "when": "at-time", "at": "tomorrow"}, "DPM-E282"),
    ],
)
def test_remote_update_parameters_are_checked_at_save(params: dict[str, str], code: str) -> None:
    assert code_of({"kind": "remote-update", "params": params}) == code


def test_a_good_remote_update_is_accepted_and_multicast_delivery_refused() -> None:
    good = {"packages": "tool_1,hotfix-2", "when": "now"}
    assert code_of({"kind": "remote-update", "params": good}) is None
    later = {"packages": "tool_1", "when": "at-time", "at": "2027-01-01T03:00:00+01:00"}
    assert code_of({"kind": "remote-update", "params": later}) is None
    multicast = {"kind": "remote-update", "params": {"packages": "a"}, "multicast": {"group": "239.1.2.3"}}
    assert code_of(multicast) == "DPM-E115"


@pytest.mark.parametrize("mac", ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:fb", "33-33-00-00-00-01", "00:00:00:00:00:00"])
def test_broadcast_multicast_and_zero_macs_are_refused(mac: str) -> None:
    with pytest.raises(UnusableMac):
        normalize_mac(mac)
    with pytest.raises(ValidationError):
        Facts(macs=(mac.replace("-", ":").lower(),), hostname="h")
    with pytest.raises(DpmError) as err:
        parse(f"name,macs\npc1,{mac}\n")
    assert err.value.code == "DPM-E110" and "no network card" in err.value.message
    assert normalize_mac("52-54-00-12-34-56") == "52:54:00:12:34:56"  # locally administered unicast is fine


def test_agent_reported_addresses_must_parse() -> None:
    with pytest.raises(ValidationError):
        Addresses(ips=("not-an-ip",))
    with pytest.raises(ValidationError):
        Facts(macs=("52:54:00:00:00:01",), hostname="h", ips=("10.0.0.1", "999.1.1.1"))
    assert Addresses(ips=("10.0.0.1", "2001:db8::1")).ips == ("10.0.0.1", "2001:db8::1")


def test_cron_that_never_fires_is_refused() -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    with pytest.raises(DpmError) as err:
        check_fires("0 0 30 2 *", now)
    assert err.value.code == "DPM-E166"
    check_fires("0 0 29 2 *", now)  # every four years: fires


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x","y")', "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_export_cells_never_start_a_formula(cell: str) -> None:
    assert spreadsheet_safe(cell) == f"'{cell}"
    row = MachineRow(
        machine_id=uuid.uuid4(), name="pc1", macs=("52:54:00:00:00:01",), smbios_uuid=None, ip=None,
        group_name="new-machines", os_type=cell, registered_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    if cell[:1] in "\t\r":  # a control character never reaches an os_type (dpm_schemas.text)
        return
    text = render([row])
    assert list(csv.reader(io.StringIO(text, newline="")))[1][-1] == f"'{cell}"
    assert parse(text)[0].os_type == cell  # the quote is read back off: export/import stays lossless


@pytest.mark.parametrize(
    ("spec", "end", "code"),
    [
        ({"kind": "restore", "params": {"image": "g"}}, "reboot", None),  # a restored OS starts
        ({"kind": "backup", "params": {"image": "g"}, "power_off_at_end": True}, "power-off", None),
        ({"kind": "disk-check", "deploy_end": "stay"}, "stay", None),
        (
            {"kind": "backup", "params": {"image": "g"}, "power_off_at_end": True, "deploy_end": "reboot"},
            None,
            "DPM-E142",
        ),
        ({"kind": "simulated", "params": {"seconds": "1"}, "deploy_end": "stay"}, None, "DPM-E142"),
    ],
)
def test_the_deploy_environments_end_action_and_its_contradictions(
    spec: dict, end: str | None, code: str | None
) -> None:
    assert code_of(spec) == code
    if end is not None:
        assert ScenarioSpec.model_validate(spec).end_of_deploy().value == end
