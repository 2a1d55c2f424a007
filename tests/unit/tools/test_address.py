"""Target addresses are checked again inside the tools (defence in depth)."""

from __future__ import annotations

import pytest

from workers.tools.address import checked_address, server_name
from workers.tools.base import Target, ToolError


@pytest.mark.parametrize(
    ("target", "address"),
    [
        (Target(ip="127.0.0.1"), "127.0.0.1"),
        (Target(ip="::ffff:127.0.0.1"), "127.0.0.1"),
        (Target(ip="0:0::1"), "::1"),
        (Target(host="Scan-Me.Example.COM."), "scan-me.example.com"),
        (Target(host="127.0.0.1"), "127.0.0.1"),
        (Target(host="web.internal", ip="10.1.2.3"), "10.1.2.3"),
    ],
)
def test_valid_addresses_are_normalised(target: Target, address: str) -> None:
    assert checked_address(target) == address


@pytest.mark.parametrize(
    "target",
    [
        Target(ip="-iL"),
        Target(host="-oN/tmp/x"),
        Target(host=" web"),
        Target(host="web\tinternal"),
        Target(host="web/../x"),
        Target(host="a" * 64 + ".example"),
        Target(host="$(id)"),
        Target(ip="127.0.0.256"),
        Target(host="web.internal", ip="web.internal"),
        Target(),
    ],
)
def test_anything_else_is_refused(target: Target) -> None:
    with pytest.raises(ToolError, match="refused target"):
        checked_address(target)


def test_server_name_is_the_host_name_only() -> None:
    assert server_name(Target(host="WWW.example.test", ip="127.0.0.1")) == "www.example.test"
    assert server_name(Target(host="127.0.0.1")) is None
    assert server_name(Target(ip="127.0.0.1")) is None
