"""The ingest service against the machine's real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from ingest.topology import ORIGINAL_KEY_HEADER, REASON_HEADER, REASON_KIND_HEADER
from tests.integration.services import (
    REPO_ROOT,
    IngestProcess,
    Topology,
    encode,
    get_all,
    make_event,
    observed_at,
    publish,
    queue_depth,
    run_cli,
    scalar,
    wait_for,
)

pytestmark = pytest.mark.integration


def _counts(database_url: str) -> dict[str, int]:
    return {
        table: int(scalar(database_url, f"SELECT count(*) FROM {table}"))
        for table in ("findings", "observations", "ingested_events", "scans")
    }


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return run_cli(dict(os.environ, SCANFLEET_DATABASE_URL=database_url), *args)


def test_a_partial_batch_is_written_once_deliveries_pause(
    database_url: str, topology: Topology, tmp_path: Path
) -> None:
    """Ten events, batches of 1,000 and a batch time of a minute: the events are written
    as soon as the queue has nothing more and the writer nothing in hand, not after it."""
    scan_id = uuid.uuid4()
    ingest = IngestProcess(
        database_url,
        topology,
        consumers=1,
        batch_size=1000,
        extra_env={"SCANFLEET_INGEST_BATCH_MAX_WAIT_S": "60"},
    ).start(tmp_path / "ingest.log")
    try:
        publish(topology, [encode(make_event(i, scan_id)) for i in range(10)])
        wait_for(
            lambda: scalar(database_url, "SELECT count(*) FROM ingested_events") == 10,
            timeout=20,
            what="the ten events, long before the batch time",
        )
        assert ingest.stop() == 0
    finally:
        if ingest.alive():
            ingest.kill()


def test_events_published_twice_leave_exactly_one_finding_and_observation_each(
    database_url: str, topology: Topology, tmp_path: Path
) -> None:
    """1,000 events for 1,000 distinct findings, published twice: 1,000 findings, no dups."""
    scan_id = uuid.uuid4()
    bodies = [encode(make_event(i, scan_id)) for i in range(1000)]
    ingest = IngestProcess(database_url, topology).start(tmp_path / "ingest.log")
    try:
        publish(topology, bodies)
        publish(topology, bodies)
        wait_for(
            lambda: (
                queue_depth(topology.queue) == 0
                and scalar(database_url, "SELECT count(*) FROM ingested_events") == 1000
            ),
            timeout=60,
            what="both copies consumed",
        )
        # Let any in-flight second copies settle, then check nothing moved.
        wait_for(lambda: "batch" in ingest.log() or True, timeout=1)
        assert ingest.stop() == 0
    finally:
        if ingest.alive():
            ingest.kill()
    counts = _counts(database_url)
    assert counts["findings"] == 1000
    assert counts["observations"] == 1000
    assert counts["ingested_events"] == 1000
    assert counts["scans"] == 1
    assert (
        scalar(
            database_url,
            "SELECT count(*) FROM (SELECT scan_id, finding_id FROM observations "
            "GROUP BY 1, 2 HAVING count(*) > 1) d",
        )
        == 0
    )
    # The CLI reads the same truth.
    result = _cli(database_url, "findings", "count", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["total"] == 1000
    assert summary["observations"] == 1000
    assert summary["by_severity"]["info"] == 1000
    assert queue_depth(topology.dlq) == 0


def test_resighting_in_a_later_scan_moves_last_seen_and_marks_changed_attributes_updated(
    database_url: str, topology: Topology, tmp_path: Path
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    same = {"service": "ssh", "version": "9.2p1"}
    old = [
        encode(make_event(i, first, observed_at=observed_at(2), attributes=same)) for i in range(10)
    ]
    new = [
        encode(
            make_event(
                i,
                second,
                observed_at=observed_at(1),
                attributes={"service": "ssh", "version": "9.9" if i < 3 else "9.2p1"},
            )
        )
        for i in range(10)
    ]
    ingest = IngestProcess(database_url, topology, consumers=1).start(tmp_path / "ingest.log")
    try:
        publish(topology, old)
        wait_for(lambda: scalar(database_url, "SELECT count(*) FROM ingested_events") == 10, 30)
        publish(topology, new)
        wait_for(lambda: scalar(database_url, "SELECT count(*) FROM ingested_events") == 20, 30)
    finally:
        ingest.stop()
    assert _counts(database_url)["findings"] == 10
    assert _counts(database_url)["observations"] == 20
    assert (
        scalar(database_url, "SELECT count(*) FROM findings WHERE last_scan_id = %s", (second,))
        == 10
    )
    assert scalar(database_url, "SELECT count(*) FROM findings WHERE last_seen > first_seen") == 10
    # The first 3 changed a volatile attribute: "updated" (updated_at moved), not new.
    assert scalar(database_url, "SELECT count(*) FROM findings WHERE updated_at > first_seen") == 3
    result = _cli(database_url, "findings", "list", "--json", "--limit", "50")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 10
    assert all(row["observations"] == 2 for row in rows)
    assert {row["attributes"]["version"] for row in rows} == {"9.9", "9.2p1"}


def test_poison_messages_are_dead_lettered_with_reason_and_consumer_keeps_going(
    database_url: str, topology: Topology, tmp_path: Path
) -> None:
    scan_id = uuid.uuid4()
    wrong_schema = make_event(1000, scan_id)
    wrong_schema["finding"]["severity"] = "catastrophic"
    nul_byte = make_event(1001, scan_id)
    nul_byte["finding"]["title"] = "bad \u0000 title"
    before = [encode(make_event(i, scan_id)) for i in range(50)]
    after = [encode(make_event(i, scan_id)) for i in range(50, 100)]
    bodies = [*before, b"{this is not json", encode(wrong_schema), encode(nul_byte), *after]
    ingest = IngestProcess(database_url, topology, batch_size=500).start(tmp_path / "i.log")
    try:
        publish(topology, bodies)
        wait_for(lambda: queue_depth(topology.dlq) == 3, 30, what="three dead letters")
        wait_for(
            lambda: scalar(database_url, "SELECT count(*) FROM ingested_events") == 100,
            30,
            what="the good events around the poison ones",
        )
        assert ingest.alive(), ingest.log()
        # Still consuming after the poison: a later good event is ingested too.
        publish(topology, [encode(make_event(200, scan_id))])
        wait_for(lambda: scalar(database_url, "SELECT count(*) FROM findings") == 101, 30)
    finally:
        ingest.stop()
    dead = get_all(topology.dlq)
    reasons = {props.headers[REASON_KIND_HEADER]: props.headers[REASON_HEADER] for props, _ in dead}
    assert set(reasons) == {"bad_json", "validation", "rejected"}
    assert "Invalid JSON" in reasons["bad_json"]
    assert "finding.severity" in reasons["validation"]
    assert "0x00" in reasons["rejected"] and "title" in reasons["rejected"]
    assert all(props.headers[ORIGINAL_KEY_HEADER] == "finding.nmap" for props, _ in dead)
    assert {body for _, body in dead} >= {b"{this is not json"}
    assert '"event":"event_dead_lettered"' in ingest.log()


def test_events_of_a_scan_scanfleet_did_not_create_are_recorded_under_an_external_scan(
    database_url: str, topology: Topology, tmp_path: Path
) -> None:
    foreign_scan = uuid.uuid4()
    ingest = IngestProcess(database_url, topology, consumers=1).start(tmp_path / "ingest.log")
    try:
        publish(topology, [encode(make_event(i, foreign_scan)) for i in range(5)], "finding.trivy")
        wait_for(lambda: scalar(database_url, "SELECT count(*) FROM findings") == 5, 30)
    finally:
        ingest.stop()
    assert scalar(database_url, "SELECT origin FROM scans WHERE id = %s", (foreign_scan,)) == (
        "external"
    )
    result = _cli(database_url, "findings", "count", "--json", "--scan", str(foreign_scan))
    assert json.loads(result.stdout)["total"] == 5


def test_killing_ingest_mid_batch_loses_no_event_and_duplicates_none(
    database_url: str, topology: Topology, tmp_path: Path
) -> None:
    total = 6000
    scan_id = uuid.uuid4()
    publish(topology, (encode(make_event(i, scan_id)) for i in range(total)))
    ingest = IngestProcess(database_url, topology, batch_size=100)
    ingest.extra_env["SCANFLEET_INGEST_PREFETCH"] = "300"
    ingest.start(tmp_path / "first.log")
    committed = wait_for(
        lambda: scalar(database_url, "SELECT count(*) FROM ingested_events") or 0,
        timeout=60,
        interval=0.01,
        what="the first committed batch",
    )
    consumer_pids = ingest.kill()
    assert committed < total, "ingest finished before it could be killed; raise the total"
    # The consumers die with their supervisor (no orphan keeps consuming).
    wait_for(
        lambda: (
            not any(
                psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                for p in consumer_pids
            )
        ),
        10,
        what="consumers to die",
    )
    partial = scalar(database_url, "SELECT count(*) FROM ingested_events")
    assert partial < total
    restarted = IngestProcess(database_url, topology, batch_size=100).start(tmp_path / "2.log")
    try:
        wait_for(
            lambda: scalar(database_url, "SELECT count(*) FROM ingested_events") == total,
            timeout=120,
            what="every event after the restart",
        )
    finally:
        restarted.stop()
    counts = _counts(database_url)
    assert counts["findings"] == total
    assert counts["observations"] == total
    assert queue_depth(topology.queue) == 0
    assert queue_depth(topology.dlq) == 0


def test_ingest_refuses_to_start_on_a_database_without_the_schema(
    empty_database: str, topology: Topology, tmp_path: Path
) -> None:
    ingest = IngestProcess(empty_database, topology)
    result = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "ingest"],
        env=ingest.env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "scanfleet db upgrade" in result.stderr


def test_ingest_without_broker_url_says_what_is_missing(database_url: str) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "SCANFLEET_BROKER_URL"}
    env["SCANFLEET_DATABASE_URL"] = database_url
    result = run_cli(env, "ingest", timeout=60)
    assert result.returncode == 2
    assert "SCANFLEET_BROKER_URL" in result.stderr
