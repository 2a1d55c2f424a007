"""Ingest throughput against the raw limit of the same database, in the same run.

Publishes a backlog of finding events (default 100,000: 20,000 distinct findings,
each sighted 5 times in 5 scans, ~700 bytes of evidence each) onto a findings
exchange of its own, starts ``scanfleet ingest`` and times it until every event
is committed. Then measures, on the same rows, the raw limit: a plain COPY into
a staging table plus one INSERT ... ON CONFLICT upsert. Finally repeats the
ingest with 1,000,000 findings already in the table. The empty-table run is repeated
(``--repeat``, default 3) and so are passes over the prefilled table, each with events of
its own; the medians are compared. Prints JSON.

    python bench/ingest.py [--events 100000] [--distinct 20000] [--prefill 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pika
import psutil
import psycopg
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from common import BROKER_URL, drop_database, events, fresh_database

from ingest.decode import record_from_body
from ingest.record import RECORD_COLUMNS
from ingest.settings import BrokerSettings, IngestSettings
from storage.migrate import upgrade


def publish_backlog(bodies: list[bytes], exchange: str, queue: str) -> float:
    """Declare the topology as ingest does, publish every body, wait until all are queued."""
    from ingest.topology import FindingsTopology, declare

    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    channel = connection.channel()
    topology = FindingsTopology.from_settings(
        BrokerSettings(findings_exchange=exchange), IngestSettings(queue=queue)
    )
    declare(channel, topology)
    properties = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    started = time.perf_counter()
    for body in bodies:
        channel.basic_publish(exchange, "finding.bench", body, properties)
    while channel.queue_declare(queue, passive=True).method.message_count < len(bodies):
        connection.process_data_events(time_limit=0.1)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def delete_topology(exchange: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    channel = connection.channel()
    for name in (queue, f"{queue}.dlq"):
        channel.queue_delete(name)
    for name in (exchange, f"{queue}.dlx"):
        channel.exchange_delete(name)
    connection.close()


def _consumers_in(processes: list[psutil.Process]) -> int:
    """How many of ``processes`` are consumer processes (spawned by multiprocessing)."""
    count = 0
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            count += any("spawn_main" in part for part in p.cmdline())
    return count


def _rss(processes: list[psutil.Process]) -> int:
    total = 0
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def _service_cpu() -> dict[str, float]:
    """CPU seconds used so far by the PostgreSQL and RabbitMQ server processes."""
    totals = {"postgresql": 0.0, "rabbitmq": 0.0}
    for proc in psutil.process_iter(["name", "cpu_times"]):
        name = proc.info["name"] or ""
        times = proc.info["cpu_times"]
        if times is None:
            continue
        key = (
            "postgresql" if name.startswith("postgres") else "rabbitmq" if "beam" in name else None
        )
        if key:
            totals[key] += times.user + times.system
    return totals


def settle_services(timeout_s: float = 60.0, idle_cores: float = 0.05) -> float:
    """Wait until RabbitMQ and PostgreSQL are idle (e.g. done persisting the backlog)."""
    started = time.perf_counter()
    previous = sum(_service_cpu().values())
    while time.perf_counter() - started < timeout_s:
        time.sleep(0.5)
        current = sum(_service_cpu().values())
        if (current - previous) / 0.5 < idle_cores:
            break
        previous = current
    return time.perf_counter() - started


def _tree_cpu(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_ingest(
    db_url: str,
    exchange: str,
    queue: str,
    expected: int,
    consumers: int,
    batch_size: int,
    timeout_s: float = 900,
) -> dict[str, float]:
    metrics_port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "SCANFLEET_DATABASE_URL": db_url,
            "SCANFLEET_BROKER_URL": BROKER_URL,
            "SCANFLEET_FINDINGS_EXCHANGE": exchange,
            "SCANFLEET_INGEST_QUEUE": queue,
            "SCANFLEET_INGEST_CONSUMERS": str(consumers),
            "SCANFLEET_INGEST_BATCH_SIZE": str(batch_size),
            "SCANFLEET_INGEST_METRICS_PORT": str(metrics_port),
            "SCANFLEET_INGEST_LOG_LEVEL": "WARNING",
        }
    )
    cpu_before = _service_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "ingest"], env=env)
    ps = psutil.Process(proc.pid)
    first_at: float | None = None
    first_cpu: dict[str, float] = {}
    first_count = 0
    peak_rss = 0
    count = 0
    polls = 0
    # The service's processes, found once all consumers are up: listing a process's
    # children reads every /proc entry (~3 ms here), too much to repeat while measuring.
    tree = [ps]
    try:
        # Cheap probes while it runs: every 0.1 s until the first batch is committed, then
        # every 0.2 s, the queue depth (each passive declare costs the broker CPU, so not
        # more often), and once the queue is empty, every 20 ms: the events the service
        # has committed, from its own metrics (a counter moved after each commit, read off
        # the files its consumers write). Counting rows in the database instead costs what
        # the tables held before: a count(*) of a ledger prefilled with 1,000,000 rows took
        # ~60 ms of PostgreSQL each time, and made the prefilled run look slower.
        broker = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
        channel = broker.channel()
        queue_empty = False
        while count < expected:
            if proc.poll() is not None:
                raise RuntimeError(f"ingest exited with {proc.returncode}")
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"timed out with {count}/{expected} events committed")
            time.sleep(0.02)
            polls += 1
            if polls % 25 == 0:
                if _consumers_in(tree) < consumers:
                    tree = [ps, *ps.children(recursive=True)]
                peak_rss = max(peak_rss, _rss(tree))
            if first_at is None:
                if polls % 5 == 0 and (committed := _committed(metrics_port)):
                    first_at = time.perf_counter()
                    first_cpu = {"ingest": _tree_cpu(ps), **_service_cpu()}
                    first_count = committed
                continue
            if not queue_empty:
                if polls % 10:
                    continue
                depth = channel.queue_declare(queue, passive=True).method.message_count
                queue_empty = depth == 0
                if not queue_empty:
                    continue
            # Delivered to the consumers: the last batches are being written.
            count = _committed(metrics_port)
        broker.close()
        done_at = time.perf_counter()
        ingest_cpu = _tree_cpu(ps)
        cpu_after = _service_cpu()
        last_cpu = {"ingest": ingest_cpu, **cpu_after}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert first_at is not None
    steady = (expected - first_count) / max(done_at - first_at, 1e-9)
    return {
        "events": expected,
        "wall_s_including_startup": round(done_at - started, 3),
        "startup_to_first_commit_s": round(first_at - started, 3),
        "events_per_s": round(steady, 1),
        "events_per_s_including_startup": round(expected / (done_at - started), 1),
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "cpu_s": {
            "ingest": round(ingest_cpu, 2),
            **{k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_after},
        },
        # CPU per event between the first commit and the last (start-up excluded): the
        # figure to compare across runs on a shared machine.
        "steady_cpu_us_per_event": {
            k: round((last_cpu[k] - first_cpu[k]) / max(expected - first_count, 1) * 1e6, 1)
            for k in last_cpu
        },
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _committed(metrics_port: int) -> int:
    """Events the service has committed, from its metrics (0 before it serves them)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            page = r.read().decode()
    except OSError:
        return 0
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == "scanfleet_ingest_events_consumed_total":
                return int(sample.value)
    return 0


def db_counts(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        result = {}
        for table in ("findings", "observations", "ingested_events"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            result[table] = int(row[0]) if row else 0
        return result


_RAW_TABLE = """
CREATE TABLE raw_findings (
    id bigserial PRIMARY KEY,
    fingerprint text COLLATE "C" NOT NULL UNIQUE,
    kind text, rule_id text, asset_key text, transport text, port integer, url text,
    identity jsonb, title text, severity text, confidence text, attributes jsonb,
    attr_hash text, evidence jsonb, first_seen timestamptz, last_seen timestamptz
)
"""

_RAW_STAGE = """
CREATE TEMPORARY TABLE raw_stage (
    event_id uuid, scan_id uuid, task_id uuid, tool_name text, tool_version text,
    observed_at timestamptz, fingerprint text COLLATE "C", kind text, rule_id text,
    asset_key text, host text, ip text, transport text, port integer, url text,
    identity jsonb, title text, severity text, confidence text, attributes jsonb,
    attr_hash text COLLATE "C", description text, remediation text, "references" jsonb,
    cwe jsonb, cve jsonb, cvss double precision, evidence jsonb
)
"""

_RAW_UPSERT = """
INSERT INTO raw_findings AS f (fingerprint, kind, rule_id, asset_key, transport, port, url,
    identity, title, severity, confidence, attributes, attr_hash, evidence, first_seen, last_seen)
SELECT DISTINCT ON (fingerprint) fingerprint, kind, rule_id, asset_key, transport, port, url,
    identity, title, severity, confidence, attributes, attr_hash, evidence, observed_at, observed_at
FROM raw_stage ORDER BY fingerprint, observed_at DESC
ON CONFLICT (fingerprint) DO UPDATE SET
    last_seen = GREATEST(f.last_seen, EXCLUDED.last_seen), attributes = EXCLUDED.attributes,
    attr_hash = EXCLUDED.attr_hash, evidence = EXCLUDED.evidence, title = EXCLUDED.title
"""


def raw_limit(db_url: str, bodies: list[bytes], repeat: int = 3) -> dict[str, object]:
    """The best of ``repeat`` runs of :func:`raw_limit_once` (the limit is a maximum)."""
    runs = [raw_limit_once(db_url, bodies) for _ in range(repeat)]
    best = max(runs, key=lambda r: r["rows_per_s"])
    return {**best, "runs_rows_per_s": [r["rows_per_s"] for r in runs]}


def raw_limit_once(db_url: str, bodies: list[bytes]) -> dict[str, float]:
    """COPY the same rows into a staging table, then one INSERT ... ON CONFLICT upsert."""
    rows = [tuple(record_from_body(body)) for body in bodies]
    columns = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)
    with psycopg.connect(db_url) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_findings")
        conn.execute(_RAW_TABLE)
        conn.execute(_RAW_STAGE)
        conn.commit()
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY raw_stage ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            copied = time.perf_counter()
            cur.execute(_RAW_UPSERT)
        elapsed = time.perf_counter() - started
    return {
        "rows": len(rows),
        "copy_s": round(copied - started, 3),
        "total_s": round(elapsed, 3),
        "rows_per_s": round(len(rows) / elapsed, 1),
    }


def prefill(db_url: str, findings: int) -> float:
    """Fill findings (with their assets, observations and event ids) as a year of scans would."""
    started = time.perf_counter()
    scan_id = uuid.uuid4()
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO scans (id, origin, status, created_at) VALUES (%s, 'scanfleet', "
            "'completed', now())",
            (scan_id,),
        )
        conn.execute(
            "INSERT INTO assets (key, ip, first_seen) SELECT 'prefill-' || g, NULL, now() "
            "FROM generate_series(1, 5000) g"
        )
        conn.execute(
            f"""
            INSERT INTO findings (fingerprint, kind, rule_id, asset_id, transport, port, identity,
                title, severity, confidence, attributes, attr_hash, status, first_seen, last_seen,
                updated_at, last_scan_id)
            SELECT encode(sha256(('prefill-' || g)::bytea), 'hex'), 'network.service', 'open-port',
                a.id, 'tcp', mod(g, 65536)::int, '{{}}', 'Open port', 'info', 'high',
                '{{"service": "http"}}', encode(sha256(('attr-' || g)::bytea), 'hex'), 'open',
                now() - interval '30 days', now() - interval '1 day', now() - interval '1 day',
                %s
            FROM generate_series(1, {int(findings)}) g
            JOIN assets a ON a.key = 'prefill-' || (mod(g, 5000) + 1)
        """,
            (scan_id,),
        )
        conn.execute(
            """
            INSERT INTO observations (finding_id, scan_id, event_id, observed_at, tool_name,
                tool_version, attr_hash, evidence)
            SELECT id, %s, gen_random_uuid(), last_seen, 'nmap', '7.93', attr_hash,
                '[{"type": "banner", "content": "prefilled"}]'
            FROM findings
        """,
            (scan_id,),
        )
        conn.execute("""
            INSERT INTO ingested_events (event_id, scan_id, ingested_at)
            SELECT event_id, scan_id, observed_at FROM observations
        """)
        conn.commit()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    checkpoint(db_url)
    return time.perf_counter() - started


def checkpoint(db_url: str) -> None:
    """Start the measured run from a finished checkpoint, not in the middle of one that the
    set-up's bulk writes triggered."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def one_run(
    label: str, bodies: list[bytes], args: argparse.Namespace, prefill_findings: int = 0
) -> dict[str, object]:
    return prefilled_runs(label, [bodies], args, prefill_findings)[0]


def prefilled_runs(
    label: str, backlogs: list[list[bytes]], args: argparse.Namespace, prefill_findings: int
) -> list[dict[str, object]]:
    """Ingest each backlog in turn into one database (prefilled with that many findings)."""
    name = f"scanfleet_bench_{label}"
    db_url = fresh_database(name)
    suffix = uuid.uuid4().hex[:8]
    exchange, queue = f"bench.findings.{suffix}", f"bench.ingest.{suffix}"
    results: list[dict[str, object]] = []
    try:
        upgrade(db_url)
        prefill_s = prefill(db_url, prefill_findings) if prefill_findings else 0.0
        for bodies in backlogs:
            result: dict[str, object] = {}
            before = db_counts(db_url)
            if prefill_findings:
                result["prefill_s"] = round(prefill_s, 1)
                result["prefilled_findings"] = prefill_findings
                result["findings_before"] = before["findings"]
            result["publish_s"] = round(publish_backlog(bodies, exchange, queue), 2)
            checkpoint(db_url)
            result["settle_s"] = round(settle_services(), 2)
            result.update(
                run_ingest(db_url, exchange, queue, len(bodies), args.consumers, args.batch_size)
            )
            result["committed"] = db_counts(db_url)
            if result["committed"]["ingested_events"] != before["ingested_events"] + len(bodies):
                raise RuntimeError(f"ledger holds {result['committed']} after {before}")
            if not prefill_findings:
                result["raw_limit"] = raw_limit(db_url, bodies)
            results.append(result)
        return results
    finally:
        delete_topology(exchange, queue)
        if not args.keep:
            drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=20_000)
    parser.add_argument(
        "--prefill",
        type=int,
        default=1_000_000,
        help="findings already in the table for the second run (0 skips it)",
    )
    # The service's own defaults, so that the benchmark measures what a deployment runs.
    defaults = IngestSettings.model_fields
    parser.add_argument("--consumers", type=int, default=defaults["consumers"].default)
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"].default)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="empty-table runs, and passes over the prefilled table (medians are reported)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    args = parser.parse_args()
    if args.events % args.distinct:
        parser.error("--events must be a multiple of --distinct")
    sightings = args.events // args.distinct
    bodies = list(events(args.distinct, sightings))
    report: dict[str, object] = {
        "benchmark": "ingest",
        "events": len(bodies),
        "distinct_findings": args.distinct,
        "sightings_per_finding": sightings,
        "mean_event_bytes": round(sum(map(len, bodies)) / len(bodies)),
        "consumers": args.consumers,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
    }
    # RabbitMQ's CPU per delivered message on this machine is bimodal from one run to the
    # next (about 12 or 25 us, whatever the consumer does), so the empty-table run is
    # repeated and the median ratio reported, beside every run's own figures.
    runs = []
    for _ in range(args.repeat):
        run = one_run("empty", bodies, args)
        raw_run = run["raw_limit"]
        assert isinstance(raw_run, dict)
        run["ratio_to_raw_limit"] = round(
            float(run["events_per_s"]) / float(raw_run["rows_per_s"]), 3
        )
        runs.append(run)
    empty = sorted(runs, key=lambda r: float(r["ratio_to_raw_limit"]))[len(runs) // 2]
    report["empty_table"] = empty
    report["empty_table_runs"] = [
        {
            "events_per_s": r["events_per_s"],
            "raw_rows_per_s": r["raw_limit"]["rows_per_s"],
            "ratio_to_raw_limit": r["ratio_to_raw_limit"],
            "steady_cpu_us_per_event": r["steady_cpu_us_per_event"],
        }
        for r in runs
    ]
    raw = empty["raw_limit"]
    assert isinstance(raw, dict)
    report["ratio_to_raw_limit"] = empty["ratio_to_raw_limit"]
    report["ratio_to_raw_limit_including_startup"] = round(
        float(empty["events_per_s_including_startup"]) / float(raw["rows_per_s"]), 3
    )
    if args.prefill:
        # As many passes over one prefilled database, each with events of its own (new
        # event ids and scans; the same 20,000 findings, re-sighted by the later passes).
        backlogs = [bodies] + [
            list(events(args.distinct, sightings, seed=7 + k)) for k in range(1, args.repeat)
        ]
        passes = prefilled_runs("prefilled", backlogs, args, prefill_findings=args.prefill)
        full = sorted(passes, key=lambda r: float(r["events_per_s"]))[len(passes) // 2]
        report["prefilled_table"] = full
        report["prefilled_table_runs"] = [
            {
                "findings_before": r["findings_before"],
                "events_per_s": r["events_per_s"],
                "steady_cpu_us_per_event": r["steady_cpu_us_per_event"],
            }
            for r in passes
        ]
        report["ratio_prefilled_to_empty"] = round(
            float(full["events_per_s"]) / float(empty["events_per_s"]),
            3,
        )
    report["targets"] = {"ratio_to_raw_limit": 0.40, "ratio_prefilled_to_empty": 0.80}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
