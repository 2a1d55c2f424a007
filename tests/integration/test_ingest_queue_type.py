"""The findings queue's RabbitMQ type: quorum by default, classic on request, and a queue
that already exists as the other type refused with what to do about it."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika.exceptions
import pytest

from contracts.errors import ConfigError
from ingest.settings import BrokerSettings, IngestSettings
from ingest.topology import FindingsTopology, declare
from tests.integration.services import (
    IngestProcess,
    Topology,
    broker_channel,
    delete_topology,
    encode,
    make_event,
    publish,
    queue_depth,
    run_cli,
    scalar,
    wait_for,
)

pytestmark = pytest.mark.integration


def queue_types() -> dict[str, str]:
    """Every queue of the default vhost and its type, as RabbitMQ reports them."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "type", "--no-table-headers"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return dict(line.split("\t", 1) for line in listed.stdout.splitlines() if "\t" in line)


def declare_as(topology: Topology, queue_type: str) -> None:
    findings = FindingsTopology.from_settings(
        BrokerSettings(findings_exchange=topology.exchange),
        IngestSettings(queue=topology.queue, queue_type=queue_type),
    )
    connection, channel = broker_channel()
    try:
        declare(channel, findings)
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def classic_topology() -> Iterator[Topology]:
    """Names of the test's own, declared as an earlier scanfleet did: classic queues."""
    suffix = uuid.uuid4().hex[:10]
    names = Topology(exchange=f"test.findings.{suffix}", queue=f"test.classic.{suffix}")
    declare_as(names, "classic")
    try:
        yield names
    finally:
        delete_topology(names)


def test_the_findings_queue_and_its_dead_letters_are_quorum_queues_by_default(
    topology: Topology, classic_topology: Topology
) -> None:
    types = queue_types()
    assert types[topology.queue] == "quorum"
    assert types[topology.dlq] == "quorum"
    # ...and classic ones when asked for.
    assert types[classic_topology.queue] == "classic"
    assert types[classic_topology.dlq] == "classic"


def test_declaring_a_queue_as_another_type_says_what_to_do(
    topology: Topology, classic_topology: Topology
) -> None:
    with pytest.raises(ConfigError) as refused:
        declare_as(topology, "classic")
    message = str(refused.value)
    assert repr(topology.dlq) in message, "names the queue that is in the way"
    assert "SCANFLEET_INGEST_QUEUE_TYPE=quorum" in message
    with pytest.raises(ConfigError, match="SCANFLEET_INGEST_QUEUE_TYPE=classic"):
        declare_as(classic_topology, "quorum")
    # Declaring as the same type again changes nothing (every consumer does it).
    declare_as(topology, "quorum")
    declare_as(classic_topology, "classic")


def test_a_refusal_other_than_the_type_is_not_reworded() -> None:
    # The dead-letter queue's name is held by another connection's exclusive queue:
    # RESOURCE_LOCKED (405), which is not about the type.
    names = Topology(
        exchange=f"test.findings.{uuid.uuid4().hex[:10]}",
        queue=f"test.locked.{uuid.uuid4().hex[:10]}",
    )
    owner, owner_channel = broker_channel()
    owner_channel.queue_declare(names.dlq, exclusive=True)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            declare_as(names, "quorum")
        assert refused.value.reply_code == 405
    finally:
        owner.close()
        delete_topology(names)


def test_ingest_will_not_start_on_a_queue_of_another_type_and_leaves_it_as_it_was(
    database_url: str, classic_topology: Topology, tmp_path: Path
) -> None:
    publish(classic_topology, [encode(make_event(0, uuid.uuid4()))])
    default = IngestProcess(database_url, classic_topology, consumers=1)
    refused = run_cli(default.env(), "ingest", timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert "SCANFLEET_INGEST_QUEUE_TYPE=classic" in " ".join(refused.stderr.split())
    assert queue_depth(classic_topology.queue) == 1, "the waiting event is still there"
    assert queue_types()[classic_topology.queue] == "classic"
    # Told the queue's type, ingest consumes it as before.
    classic = IngestProcess(database_url, classic_topology, consumers=1)
    classic.extra_env["SCANFLEET_INGEST_QUEUE_TYPE"] = "classic"
    classic.start(tmp_path / "classic.log")
    try:
        wait_for(
            lambda: scalar(database_url, "SELECT count(*) FROM ingested_events") == 1,
            60,
            what="the event ingested from the classic queue",
        )
    finally:
        classic.stop()
    assert queue_depth(classic_topology.queue) == 0
