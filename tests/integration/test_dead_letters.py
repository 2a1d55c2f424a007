"""``scanfleet dlq list|retry``: dead-lettered events are visible with their reason and can
be sent back once the cause is gone."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.integration.services import (
    IngestProcess,
    Topology,
    encode,
    make_event,
    publish,
    queue_depth,
    run_cli,
    scalar,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_dead_lettered_events_are_listed_with_their_reason_and_retried(
    database_url: str, topology: Topology, tmp_path: Path
) -> None:
    scan_id = uuid.uuid4()
    events = []
    for i in range(3):
        event = make_event(i, scan_id)
        event["finding"]["description"] = "a long description " * 100  # > 1 KiB
        events.append(encode(event))
    # An ingest configured with a too-small message limit dead-letters them all...
    strict = IngestProcess(database_url, topology, consumers=1)
    strict.extra_env["SCANFLEET_INGEST_MAX_MESSAGE_BYTES"] = "1024"
    strict.start(tmp_path / "strict.log")
    try:
        publish(topology, events)
        wait_for(lambda: queue_depth(topology.dlq) == 3, 30, what="three dead letters")
    finally:
        strict.stop()
    env = strict.env()
    listed = run_cli(env, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = [d for d in json.loads(listed.stdout) if d["queue"] == topology.dlq]
    assert len(letters) == 3
    assert all(
        d["reason_kind"] == "too_large" and "1024-byte limit" in d["reason"] for d in letters
    )
    assert all(d["routing_key"] == "finding.nmap" for d in letters)
    assert queue_depth(topology.dlq) == 3, "listing does not consume"
    # ...once the limit is fixed, retrying ingests them and empties the queue.
    fixed = IngestProcess(database_url, topology, consumers=1).start(tmp_path / "fixed.log")
    try:
        retried = run_cli(env, "dlq", "retry", topology.dlq)
        assert retried.returncode == 0, retried.stderr
        assert "3 message(s) sent back" in retried.stdout
        wait_for(lambda: scalar(database_url, "SELECT count(*) FROM findings") == 3, 30)
    finally:
        fixed.stop()
    assert queue_depth(topology.dlq) == 0
    unknown = run_cli(env, "dlq", "retry", "no.such.dlq")
    assert unknown.returncode == 2
    assert "unknown dead-letter queue" in unknown.stderr
