"""How the nmap plugin builds its argument list: options, rate, time limit, the target."""

from __future__ import annotations

from typing import Any

import pytest

from workers.tools.base import RunContext, Target, ToolError
from workers.tools.nmap import NmapTool


def argv(
    target: Target | None = None,
    *,
    rps: float | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[str, ...]:
    ctx = RunContext(
        target=target or Target(ip="127.0.0.1"),
        time_limit_s=300,
        rps=rps,
        options=options or {},
    )
    return NmapTool().invocation(ctx).argv


def test_connect_scan_with_version_detection_and_xml_on_stdout() -> None:
    args = argv()
    assert args[0] == "nmap"
    for flag in ("-sT", "-sV", "-Pn", "-n", "--open"):
        assert flag in args
    assert args[args.index("-oX") + 1] == "-"


def test_default_ports_are_nmaps_top_100() -> None:
    args = argv()
    assert args[args.index("--top-ports") + 1] == "100"
    assert "-p" not in args


def test_a_host_port_target_scans_its_port_unless_ports_are_given() -> None:
    args = argv(Target(ip="127.0.0.1", port=8443))
    assert args[args.index("-p") + 1] == "8443"
    assert "--top-ports" not in args
    args = argv(Target(ip="127.0.0.1", port=8443), options={"ports": "22"})
    assert args[args.index("-p") + 1] == "22"


def test_ports_option_overrides_the_default() -> None:
    args = argv(options={"ports": "22,80,8000-8100"})
    assert args[args.index("-p") + 1] == "22,80,8000-8100"
    assert "--top-ports" not in args
    args = argv(options={"ports": [443, 22]})
    assert args[args.index("-p") + 1] == "443,22"


@pytest.mark.parametrize(
    "ports", ["22;id", "-iL /etc/passwd", "22 80", "0", "70000", "90-80", "", "1,,2", "--top"]
)
def test_port_lists_other_than_digits_commas_and_dashes_are_refused(ports: str) -> None:
    with pytest.raises(ToolError, match="port"):
        argv(options={"ports": ports})


def test_rate_budget_becomes_max_rate() -> None:
    args = argv(rps=50.0)
    assert args[args.index("--max-rate") + 1] == "50"
    args = argv(rps=0.5)
    assert args[args.index("--max-rate") + 1] == "0.5"
    assert "--max-rate" not in argv()


def test_time_limit_becomes_a_host_timeout_below_it() -> None:
    args = argv()
    seconds = int(args[args.index("--host-timeout") + 1].rstrip("s"))
    assert 0 < seconds < 300


def test_target_is_last_and_after_double_dash() -> None:
    args = argv(Target(host="Web.Internal"))
    assert args[-2:] == ("--", "web.internal")
    assert argv(Target(host="web.internal", ip="127.0.0.1"))[-2:] == ("--", "127.0.0.1")


def test_ipv6_target_adds_the_ipv6_flag() -> None:
    args = argv(Target(ip="::1"))
    assert "-6" in args
    assert args[-1] == "::1"
    assert "-6" not in argv()


@pytest.mark.parametrize(
    "target",
    [
        Target(ip="-iL /etc/passwd"),
        Target(host="-iL"),
        Target(host="--script=evil"),
        Target(ip="-oX"),
        Target(host="web internal"),
        Target(host="a;b"),
        Target(ip="not-an-ip"),
        Target(),
    ],
)
def test_targets_that_could_become_options_are_refused(target: Target) -> None:
    with pytest.raises(ToolError, match="refused target"):
        argv(target)


def test_version_detection_can_be_turned_off_and_intensity_set() -> None:
    assert "-sV" not in argv(options={"version_detection": False})
    args = argv(options={"version_intensity": 2})
    assert args[args.index("--version-intensity") + 1] == "2"
    with pytest.raises(ToolError, match="version_intensity"):
        argv(options={"version_intensity": "9; rm"})


def test_output_is_xml_and_exit_zero_is_the_only_success() -> None:
    invocation = NmapTool().invocation(RunContext(Target(ip="127.0.0.1"), time_limit_s=60))
    assert invocation.media_type == "application/xml"
    assert invocation.ok_exit_codes == frozenset({0})
