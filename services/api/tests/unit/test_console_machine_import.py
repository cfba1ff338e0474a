"""The CSV import's upload rules, without a server: the file wins over the pasted text, a byte order
mark is dropped, a file over MAX_CSV is DPM-E435 and one that is not UTF-8 is DPM-E178 naming the
file and the first bad byte."""

from __future__ import annotations

from typing import Any

import pytest

from dpm_api.console import machine_import
from dpm_api.console.machine_import import MAX_CSV, Posted
from dpm_schemas.errors import DpmError

WHO: Any = object()  # the visitor plays no part in reading the CSV


def test_the_file_wins_over_the_pasted_text_and_loses_its_byte_order_mark() -> None:
    posted = Posted(WHO, {"csv": ["pasted"]}, ("fleet.csv", "\ufeffname\r\npc-1\r\n".encode()))
    assert posted.text() == "name\r\npc-1\r\n"
    assert Posted(WHO, {"csv": ["pasted"]}, None).text() == "pasted"
    assert Posted(WHO, {}, None).text() == ""


def test_a_file_that_is_not_utf8_names_the_file_and_the_byte() -> None:
    with pytest.raises(DpmError) as got:
        Posted(WHO, {}, ("old.csv", "name\nm\xe9tro\n".encode("latin-1"))).text()
    assert got.value.code == "DPM-E178"
    assert "'old.csv'" in got.value.message and "byte 7 (0xe9)" in got.value.message


@pytest.mark.parametrize("upload", [True, False])
def test_over_the_limit_is_refused_uploaded_or_pasted(upload: bool) -> None:
    text = "x" * (MAX_CSV + 1)
    posted = Posted(WHO, {"csv": [text]}, ("big.csv", text.encode()) if upload else None)
    with pytest.raises(DpmError) as got:
        posted.text()
    assert got.value.code == "DPM-E435"
    assert Posted(WHO, {"csv": [text[:MAX_CSV]]}, None).text() == text[:MAX_CSV]
    assert machine_import.MAX_BODY > 3 * MAX_CSV  # a urlencoded paste of the largest CSV still reaches the check
