"""Port list options: validated text or numbers, expanded or passed on canonically."""

from __future__ import annotations

import pytest

from workers.tools.base import ToolError
from workers.tools.ports import port_list, port_spec


def test_ranges_and_single_ports_expand_sorted_and_distinct() -> None:
    assert port_list("80,22,20-23") == [20, 21, 22, 23, 80]
    assert port_list([443, 22, 443]) == [22, 443]
    assert port_list((1,)) == [1]


def test_spec_is_canonical_text() -> None:
    assert port_spec(" 22,80,8000-8100 ") == "22,80,8000-8100"
    assert port_spec([80, 22]) == "80,22"
    assert port_spec("5-5") == "5"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a",
        "22 80",
        "22;80",
        "-1",
        "0",
        "65536",
        "9-1",
        ",",
        "1-2-3",
        [],
        [0],
        [True],
        ["22"],
        22,
        None,
        {"22": 1},
        b"22",
    ],
)
def test_invalid_port_lists_are_refused(value: object) -> None:
    with pytest.raises(ToolError, match="port"):
        port_list(value)
