"""Name and network rules, and the machine CSV format: pure, table-driven, plus a property round trip."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpm_api.domain.csvfile import MachineSpec, parse, plan_import, render
from dpm_api.domain.rules import check_group_network, check_machine_name
from dpm_api.domain.view import MachineRow
from dpm_schemas.errors import DpmError


@pytest.mark.parametrize(
    ("subnet", "broadcast", "gateway", "expected"),
    [
        (None, None, None, None),
        ("192.168.0.0/24", None, None, "192.168.0.255"),
        ("10.1.0.0/16", "10.1.255.255", "10.1.0.1", "10.1.255.255"),
        ("192.168.0.0/24", "192.168.1.255", None, "DPM-E108"),
        ("192.168.0.0/24", None, "192.168.0.255", "DPM-E108"),
        ("192.168.0.0/31", None, None, "DPM-E108"),
        (None, "10.0.0.255", None, "DPM-E108"),
    ],
)
def test_group_network_rules(subnet, broadcast, gateway, expected) -> None:
    args = (
        IPv4Network(subnet) if subnet else None,
        IPv4Address(broadcast) if broadcast else None,
        IPv4Address(gateway) if gateway else None,
    )
    if expected and expected.startswith("DPM-"):
        with pytest.raises(DpmError) as err:
            check_group_network("g", *args)
        assert err.value.code == expected
    else:
        result = check_group_network("g", *args)
        assert (str(result) if result else None) == expected


def test_windows_names_are_checked_as_netbios_too() -> None:
    check_machine_name("a-very-long-linux-hostname", "linux")
    with pytest.raises(DpmError, match="15 characters"):
        check_machine_name("a-very-long-windows-name", "Windows 10")


def row(name: str, macs: tuple[str, ...], **kw) -> MachineRow:
    base = dict(
        machine_id=uuid.uuid4(),
        name=name,
        macs=macs,
        smbios_uuid=None,
        ip=None,
        group_name="new-machines",
        os_type=None,
        registered_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return MachineRow(**{**base, **kw})


def test_import_plan_matches_by_any_mac_or_uuid_and_refuses_rows_spanning_two_machines() -> None:
    a, b = row("a", ("52:54:00:00:00:01",)), row("b", ("52:54:00:00:00:02",))
    specs = parse("name,macs\na,52:54:00:00:00:01\nb2,52:54:00:00:00:02 52:54:00:00:00:03\nc,52:54:00:00:00:04\n")
    plan = plan_import(specs, [a, b])
    assert plan.unchanged == 1 and [s.name for s in plan.create] == ["c"]
    ((updated, _spec, changes),) = plan.update
    assert updated is b and set(changes) == {"name", "macs"}
    with pytest.raises(DpmError) as err:
        plan_import(parse("name,macs\nx,52:54:00:00:00:01 52:54:00:00:00:02\n"), [a, b])
    assert err.value.details["line"] == 2


# a NIC's own MACs only: unicast (I/G bit clear) and not all zeros; the others are refused (DPM-E109)
macs = st.lists(
    st.integers(1, 2**48 - 1).map(lambda n: n & ~(1 << 40) or 2 << 40), min_size=1, max_size=3, unique=True
).map(lambda ns: tuple(":".join(f"{(n >> s) & 255:02x}" for s in range(40, -8, -8)) for n in ns))
names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(names, macs, st.booleans(), st.sampled_from([None, "linux", "windows 11"])), max_size=8))
def test_render_then_parse_is_lossless(rows_in) -> None:
    seen: set[str] = set()
    rows = []
    for name, m, with_uuid, os_type in rows_in:
        if seen & set(m) or (os_type and len(name) > 15):
            continue
        seen |= set(m)
        rows.append(row(name, m, smbios_uuid=uuid.uuid4() if with_uuid else None, os_type=os_type, ip="10.0.0.1"))
    specs = parse(render(rows))
    expected = sorted(rows, key=lambda r: (r.name, str(r.machine_id)))
    assert [(s.name, s.macs, s.smbios_uuid, str(s.ip), s.group, s.os_type) for s in specs] == [
        (r.name, r.macs, r.smbios_uuid, r.ip, r.group_name, r.os_type) for r in expected
    ]
    assert all(isinstance(s, MachineSpec) for s in specs)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parsing_arbitrary_text_either_works_or_names_a_line(text: str) -> None:
    try:
        parse(text)
    except DpmError as exc:
        assert exc.code == "DPM-E110" and exc.details["line"] >= 1
