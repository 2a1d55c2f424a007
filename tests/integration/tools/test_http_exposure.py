"""The built-in http-exposure check against HTTP servers started here on loopback: the rate
budget, every probe sent, the findings, cancellation and the time limit."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from contracts.finding import Finding
from tests.fixtures.tools.record import closed_port
from tests.fixtures.tools.servers import HttpServer, Page
from tests.integration.tools.conftest import RecordingPacer
from workers.tools.base import RunContext, Target, ToolError
from workers.tools.http_exposure import HttpExposureTool
from workers.tools.http_exposure.paths import PROBES

pytestmark = pytest.mark.integration

TEXT = [("Content-Type", "text/plain")]
EXPOSED_PAGES: dict[str, Any] = {
    "/.git/HEAD": Page(headers=TEXT, body=b"ref: refs/heads/main\n"),
    "/.env": Page(headers=TEXT, body=b"APP_ENV=production\nDB_PASSWORD=integration-secret\n"),
    "/uploads/": Page(
        headers=[("Content-Type", "text/html")],
        body=b"<html><head><title>Index of /uploads</title></head><body>"
        b'<h1>Index of /uploads</h1><a href="a.pdf">a.pdf</a></body></html>\n',
    ),
}
EXPECTED = {
    ("exposed-git-metadata", "/.git/HEAD"),
    ("exposed-dotenv", "/.env"),
    ("directory-listing-uploads", "/uploads/"),
}


def catch_all(path: str) -> Page:
    """A 200 for any other path, naming it: the soft 404 of many sites."""
    body = f"<!doctype html><html><body><h1>{path}</h1><p>Nothing here.</p></body></html>\n"
    return Page(headers=[("Content-Type", "text/html")], body=body.encode())


def run(ctx: RunContext) -> tuple[dict[str, Any], list[Finding]]:
    tool = HttpExposureTool()
    raw = tool.collect(ctx)
    return json.loads(raw), tool.parse(raw, ctx)


def reported(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.rule_id, str(f.identity["path"])) for f in findings}


def most_in_one_second(times: list[float]) -> int:
    """The most requests any closed 1-second window holds."""
    ordered = sorted(times)
    return max(
        sum(1 for later in ordered[i:] if later - start <= 1.0) for i, start in enumerate(ordered)
    )


def test_paced_run_requests_every_probe_and_reports_only_real_exposures(
    recording_pacer: Callable[[str], list[RecordingPacer]],
) -> None:
    pacers = recording_pacer("workers.tools.http_exposure")
    with HttpServer(EXPOSED_PAGES, default=catch_all, keep_alive=True) as server:
        ctx = RunContext(Target(ip="127.0.0.1", url=server.url()), time_limit_s=60, rps=10.0)
        observed, findings = run(ctx)
        times, requests = list(server.times), list(server.requests)
        connections = len(server.connections)
    # The rate budget: no 1-second window holds more than rps + 1 requests.
    assert most_in_one_second(times) <= 11
    # Every probe was requested once, after one baseline request, and nothing else.
    probe_paths = [probe.path for probe in PROBES]
    assert requests[1:] == probe_paths
    assert requests[0].startswith("/scanfleet-")
    assert observed["requests"] == len(requests) == len(PROBES) + 1
    [pacer] = pacers
    assert (pacer.rps, pacer.reservations) == (10.0, len(requests))
    # One kept-alive connection for the whole run.
    assert connections == 1
    # The catch-all 200 answers produce nothing; the three exposures do.
    assert observed["baseline"]["status"] == 200
    assert reported(findings) == EXPECTED
    assert "integration-secret" not in json.dumps(observed)
    assert all("integration-secret" not in f.model_dump_json() for f in findings)


def test_unlimited_rate_without_keep_alive_still_reaches_every_probe() -> None:
    with HttpServer(EXPOSED_PAGES) as server:
        observed, findings = run(RunContext(Target(ip="127.0.0.1", url=server.url()), 60))
        assert len(server.connections) == len(server.requests) == len(PROBES) + 1
    assert observed["baseline"]["status"] == 404
    assert reported(findings) == EXPECTED


def test_cancel_stops_the_run_within_a_request() -> None:
    cancel = threading.Event()
    requests: list[str] = []

    def cancelling(path: str) -> Page:
        if len(requests) == 5:
            cancel.set()
        return catch_all(path)

    with HttpServer({}, default=cancelling, keep_alive=True) as server:
        requests = server.requests
        target = Target(ip="127.0.0.1", url=server.url())
        ctx = RunContext(target, time_limit_s=60, rps=50.0, cancel=cancel)
        with pytest.raises(ToolError, match="stopped after 5 requests: cancelled"):
            run(ctx)
        assert len(server.requests) == 5


def test_cancel_interrupts_the_wait_for_the_next_slot() -> None:
    """At 0.05 requests per second the next slot is 20 s away: cancelling must not wait."""
    cancel = threading.Event()
    with HttpServer({}, default=catch_all, keep_alive=True) as server:
        ctx = RunContext(
            Target(ip="127.0.0.1", url=server.url()), time_limit_s=3600, rps=0.05, cancel=cancel
        )
        outcome: list[BaseException] = []

        def collect() -> None:
            try:
                HttpExposureTool().collect(ctx)
            except ToolError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=collect, daemon=True)
        worker.start()
        while not server.requests:
            time.sleep(0.01)
        cancel.set()
        worker.join(timeout=10)
        assert not worker.is_alive()
        assert server.requests[1:] == []
    assert "cancelled" in str(outcome[0])


def test_a_run_that_cannot_fit_its_time_limit_at_its_rate_is_refused_up_front() -> None:
    with HttpServer({}) as server:
        ctx = RunContext(Target(ip="127.0.0.1", url=server.url()), time_limit_s=10, rps=1.0)
        with pytest.raises(ToolError, match=r"needs \d+ requests, more than 10 s allows at 1"):
            run(ctx)
        assert server.requests == []


def test_the_run_stops_before_its_time_limit() -> None:
    def slow(path: str) -> Page:
        time.sleep(0.4)
        return catch_all(path)

    with HttpServer({}, default=slow, keep_alive=True) as server:
        ctx = RunContext(Target(ip="127.0.0.1", url=server.url()), time_limit_s=2.5)
        with pytest.raises(ToolError, match=r"time limit of 2\.5 s is near"):
            run(ctx)
        assert 1 <= len(server.requests) < len(PROBES)


def test_probes_start_at_the_directory_of_the_url_path() -> None:
    pages = {f"/app/{path.lstrip('/')}": page for path, page in EXPOSED_PAGES.items()}
    with HttpServer(pages) as server:
        target = Target(ip="127.0.0.1", url=server.url("/app/index.php?x=1"))
        observed, findings = run(RunContext(target, 60))
        assert all(path.startswith("/app/") for path in server.requests)
    assert observed["base_url"] == server.url("/app/")
    assert reported(findings) == EXPECTED
    assert {f.asset.url for f in findings} == {server.url("/app/")}


def test_same_host_redirects_are_followed_and_offsite_ones_are_not() -> None:
    with HttpServer({"/.git/HEAD": EXPOSED_PAGES["/.git/HEAD"]}) as elsewhere:
        offsite = elsewhere.url("/.git/HEAD", host="localhost")
        pages: dict[str, Any] = {
            "/.git/HEAD": Page(status=302, headers=[("Location", offsite)]),
            "/.env": Page(status=301, headers=[("Location", "/config/.env?sig=abc")]),
            "/config/.env": EXPOSED_PAGES["/.env"],
        }
        with HttpServer(pages) as server:
            observed, findings = run(RunContext(Target(ip="127.0.0.1", url=server.url()), 60))
            assert "/config/.env?sig=abc" in server.requests
        assert elsewhere.requests == []
    by_path = {p["path"]: p for p in observed["probes"]}
    assert by_path["/.git/HEAD"]["redirect_refused"] == offsite
    assert by_path["/.env"]["redirects"] == [server.url("/config/.env?[REDACTED]")]
    assert reported(findings) == {("exposed-dotenv", "/.env")}


def test_requests_go_to_the_pinned_ip_with_the_url_host_name() -> None:
    with HttpServer(EXPOSED_PAGES) as server:
        target = Target(ip="127.0.0.1", url=server.url(host="unresolvable.invalid"))
        _, findings = run(RunContext(target, 60))
    assert reported(findings) == EXPECTED
    assert {(f.asset.host, f.asset.ip) for f in findings} == {("unresolvable.invalid", "127.0.0.1")}


def test_an_unreachable_target_is_a_tool_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    with pytest.raises(ToolError, match=r"could not reach .*refused"):
        run(RunContext(Target(ip="127.0.0.1", url=url), 60))


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "http://u:p@127.0.0.1/", "http:///x"])
def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(ToolError, match="refused"):
        run(RunContext(Target(ip="127.0.0.1", url=url), 60))


def test_a_target_that_stops_answering_fails_the_run() -> None:
    def broken(path: str) -> Page:
        if path.startswith("/scanfleet-"):
            return catch_all(path)
        raise ConnectionAbortedError("the server drops the connection")

    with HttpServer({}, default=broken, keep_alive=True) as server:
        with pytest.raises(ToolError, match=r"3 probes of .* failed in a row"):
            run(RunContext(Target(ip="127.0.0.1", url=server.url()), 60))
        assert len(server.requests) == 4
