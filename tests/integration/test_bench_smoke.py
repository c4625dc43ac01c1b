"""The benchmark commands keep working: each runs at its quickest (SQLite where it can, smallest sizes) and prints
its table and a valid JSON report. No timing is asserted: the figures are the benchmarks' business
(bench/README.md)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from bench.clients import sample_body
from bench.encryption import SAMPLE, OwnerKeys, SamplePool
from bench.report import histogram_quantile

from medstream.crypto import DataOwnerKeyPair, ExchangeSecrets, KeyStore, create_exchange_data
from medstream.model.blind_index import BLIND_INDEXED
from medstream.model.encrypted_fields import ENCRYPTED_FIELDS
from medstream.sdk.key_store import save_key_store
from tests.conftest import PG_HOST, PG_PORT, PG_USER, database_url_for

ROOT = Path(__file__).resolve().parents[2]

# The quickest useful run of each command: --quick, narrowed where one configuration shows that it works.
COMMANDS = {
    "write_path": ["--database", "sqlite"],
    "latency": ["--database", "sqlite", "--subscribers", "1", "--rates", "50"],
    "fanout": ["--subscribers", "3", "--deliveries", "30"],
    "subscription_scale": ["--kinds", "id", "--subscriptions", "5", "--matching", "3", "--events", "10"],
    "connections": ["--connections", "10", "--warmup", "2", "--idle", "0", "--settings", "deflate-off"],
}
TITLES = {
    "write_path": "Write path:",
    "latency": "Latency:",
    "fanout": "Fan-out:",
    "subscription_scale": "Subscription scale:",
    "connections": "Connections:",
    "pg_pool": "PostgreSQL connections:",
    "request_cpu": "Event-loop CPU and Python calls per REST request",
}


async def _run(name: str, arguments: list[str], json_path: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSTREAM_")}
    # Where the SDK would keep its users' key stores by default: each benchmark keeps them in a directory of its own.
    env["XDG_DATA_HOME"] = str(json_path.parent / "data-home")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"bench.{name}", "--quick", *arguments, "--json", str(json_path),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=240)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.timeout(300)
async def test_every_benchmark_prints_its_table_and_json(tmp_path: Path) -> None:
    names = list(COMMANDS)
    results = await asyncio.gather(*(_run(n, COMMANDS[n], tmp_path / f"{n}.json") for n in names))

    assert not (tmp_path / "data-home").exists(), "a benchmark's key stores are removed with its run"
    for name, (code, out, err) in zip(names, results, strict=True):
        report = _checked_report(name, code, out, err, tmp_path / f"{name}.json")
        if name == "subscription_scale":  # each of the 3 matching subscriptions got each event
            (matching,) = [row for row in report["results"]["rows"] if row["matching"]]
            assert matching["delivered_per_event"] == 3


@pytest.mark.timeout(300)
async def test_bench_pg_pool_runs_every_statement_through_every_way(tmp_path: Path) -> None:
    # Only on PostgreSQL (it skips, or fails in CI, when PostgreSQL is down); the benchmark makes its own database.
    async with database_url_for("postgresql", tmp_path):
        pg_url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}"
        code, out, err = await _run("pg_pool", ["--pg-url", pg_url], tmp_path / "pg_pool.json")

    report = _checked_report("pg_pool", code, out, err, tmp_path / "pg_pool.json")
    rows = report["results"]["rows"]
    measured = {(r["kind"], r["concurrency"], r["way"]) for r in rows}
    ways = ("store", "pool, default reset", "pool, no reset")
    assert measured == {(k, c, w) for k in ("create", "read", "select1") for c in (1, 16) for w in ways}
    assert all(r["statements_per_second"] > 0 and r["client_cpu_us"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in rows)
    # The decision rule: the pool without a reset against the store, statements/s and CPU, per statement and level.
    assert len(report["targets"]) == 8 and all(isinstance(t["met"], bool) for t in report["targets"])
    assert report["results"]["pool_no_slower"] == all(t["met"] for t in report["targets"])
    assert "decision: asyncpg's pool (no reset) is" in out


# With --encryption on: the quickest runs, the fan-out without its baseline (which encryption does not touch).
ENCRYPTED = {
    "latency": ["--database", "sqlite", "--subscribers", "1", "--rates", "50", "--encryption", "on"],
    "fanout": ["--subscribers", "3", "--deliveries", "30", "--no-baseline", "--encryption", "on"],
    "write_path": ["--database", "sqlite", "--encryption", "on"],
}


@pytest.mark.timeout(300)
async def test_with_encryption_on_every_sample_is_written_encrypted_and_every_event_read(tmp_path: Path) -> None:
    # The servers require encryption (the set-up refuses one that does not), so a sample sent with its content or
    # comment in clear would be a write error; the latency's send time is read from the decrypted comment, so an
    # event its subscriber's SDK could not decrypt would be lost.
    names = list(ENCRYPTED)
    results = await asyncio.gather(*(_run(n, ENCRYPTED[n], tmp_path / f"{n}.json") for n in names))
    reports = {
        name: _checked_report(name, code, out, err, tmp_path / f"{name}.json")
        for name, (code, out, err) in zip(names, results, strict=True)
    }

    for name, report in reports.items():
        assert report["options"]["encryption"] == "on" and report["results"]["encryption"] == "on", name
    for row in reports["latency"]["results"]["rows"]:
        assert row["write_errors"] == 0 and row["lost"] == 0, row
        assert all(run["writes"] > 0 and run["deliveries"] == run["writes"] for run in row["each_run"]), row
        assert row["p50_ms"] is not None and row["subscriber_cpu_us_per_event"] > 0, row
        # the server's share, from its metrics (on by default): every event it sent, counted in its buckets
        assert 0 < row["server_send_p50_ms"] <= row["server_send_p99_ms"], row
    for row in reports["fanout"]["results"]["medstream"]:
        assert row["write_errors"] == 0 and row["delivered"] == row["expected"] > 0, row
    for row in reports["write_path"]["results"]["rows"]:
        assert row["errors"] == 0 and row["samples_per_second"] > 0, row


@pytest.mark.timeout(300)
async def test_bench_all_gives_encryption_to_the_benchmarks_that_take_it(tmp_path: Path) -> None:
    arguments = ["--only", "write_path,crypto", "--database", "sqlite", "--encryption", "on"]
    code, _out, err = await _run("all", arguments, tmp_path / "all.json")

    assert code == 0, f"bench.all exited {code}:\n{err[-3000:]}"
    combined = json.loads((tmp_path / "all.json").read_text())
    assert combined["failures"] == {} and set(combined["results"]) == {"write_path", "crypto"}
    write_path = combined["results"]["write_path"]
    assert write_path["options"]["encryption"] == "on" and write_path["command"].endswith("--encryption on")
    assert all(row["errors"] == 0 and row["samples_per_second"] > 0 for row in write_path["results"]["rows"])
    assert "encryption" not in combined["results"]["crypto"]["options"], "crypto measures the SDK alone"


def test_the_encrypted_samples_are_what_the_sdk_reads_each_under_its_own_key(tmp_path: Path) -> None:
    keys = DataOwnerKeyPair.generate(1)
    store = KeyStore("hcp-1", [keys])
    store.ensure_search_key()
    save_key_store(tmp_path / "hcp-1.json", store)
    exchange, _ = create_exchange_data(
        "ed-1", "hcp-1", "hcp-1", [keys], [keys.public], ExchangeSecrets.generate(store.search_key)
    )
    configuration = {  # as GET /rest/v1/crypto/configuration gives it
        "requireEncryption": True,
        "encryptedFields": {kind: list(fields) for kind, fields in ENCRYPTED_FIELDS.items()},
        "blindIndexed": {
            kind: {name: {"index": f.index, "fields": list(f.sources)} for name, f in fields.items()}
            for kind, fields in BLIND_INDEXED.items()
        },
    }
    owner = OwnerKeys(str(tmp_path / "hcp-1.json"), exchange, configuration)
    reader = owner.state()  # another process of the same data owner, nothing cached but its exchange data

    for seal_at_send in (False, True):
        pool = SamplePool(owner, lambda comment: sample_body("LBL", comment), seal_at_send=seal_at_send)
        pool.fill(3)
        assert len(pool) == 3
        taken = pool.take(2)
        assert taken is not None and len(pool) == 1 and pool.take(2) is None
        batch = orjson.loads(pool.body(taken, "run:123"))
        assert len(batch) == 2 and len({sample["id"] for sample in batch}) == 2
        for sample in batch:
            assert "content" not in sample and "comment" not in sample and sample["encryptedSelf"]
            assert sample["labels"] == [{"type": "BENCH", "code": "LBL"}]
            (delegation,) = sample["securityMetadata"]["secureDelegations"].values()
            assert (delegation["delegator"], delegation["delegate"]) == ("hcp-1", "hcp-1")
            assert delegation["exchangeDataId"] == "ed-1" and delegation["permissions"] == "WRITE"
            clear = reader.decrypt(SAMPLE, sample)
            assert clear["content"] == {"en": {"stringValue": "bench sample value"}}
            # Sealed at send time, the comment is the one given then; sealed ahead, the one of its making.
            assert (clear["comment"] == "run:123") is seal_at_send
        entity_keys = {reader.entity_key(SAMPLE, sample) for sample in batch}
        assert len(entity_keys) == 2 and None not in entity_keys, "each sample has a key of its own"


def _checked_report(name: str, code: int, out: str, err: str, json_path: Path) -> dict[str, Any]:
    """The JSON report of a run that exited 0 and printed its table, with the fields every report has."""
    assert code == 0, f"bench.{name} exited {code}:\n{err[-3000:]}"
    assert TITLES[name] in out and "\n=====" in out, f"bench.{name} printed no table:\n{out[-2000:]}"
    report: dict[str, Any] = json.loads(json_path.read_text())
    assert report["benchmark"] == name
    assert report["command"].startswith(f".venv/bin/python -m bench.{name} --quick")
    assert report["results"] and {"loadavg_start", "cpus", "commit", "python_loop_ns"} <= set(report["machine"])
    assert report["machine"]["python_loop_ns"] > 0 and report["machine"]["python_loop_ns_start"] > 0
    assert all({"name", "target", "measured", "met"} <= set(t) for t in report["targets"])
    return report


@pytest.mark.timeout(300)
async def test_bench_request_cpu_measures_a_write_and_a_read_and_names_where_their_calls_go(tmp_path: Path) -> None:
    code, out, err = await _run("request_cpu", ["--top", "300"], tmp_path / "request_cpu.json")

    report = _checked_report("request_cpu", code, out, err, tmp_path / "request_cpu.json")
    rows = {row["request"]: row for row in report["results"]["rows"]}
    assert set(rows) == {"write", "read"}
    for row in rows.values():  # every request answered 200 (the command stops otherwise), and was measured
        assert row["event_loop_cpu_us"] > 0 and row["calls"] > 0
    # The calls counted are the app's: its route's handler and the middleware stack it runs behind.
    for function in ("medstream/server/rest.py:_Served.__call__", "medstream/server/edge.py:Edge._http"):
        assert f"{function} " in out, function


@pytest.mark.parametrize("name", ["validate", "prepare", "rows", "document", "event"])
def test_each_step_bench_instructions_counts_runs_on_the_current_code(name: str) -> None:
    # The command itself runs each step under valgrind (a minute or more): here each step runs once, plainly,
    # so that a step the code no longer supports fails here rather than when someone wants the counts.
    from bench.instructions import step

    results = step(name, 5)()
    assert isinstance(results, list) and len(results) == 5 and all(r is not None for r in results)


@pytest.mark.parametrize("name", ["sdk-event", "sdk-event-encrypted"])
def test_bench_instructions_sdk_event_steps_bring_each_event_to_the_callback(name: str) -> None:
    # Two passes in a child as the command runs them (without valgrind): a pass checks that each of its events
    # reached the callback (decrypted, for the encrypted step, with the keys of the pass before forgotten).
    done = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--child", name, "5", "2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr


@pytest.mark.timeout(300)
async def test_bench_sdk_socket_measures_each_client_on_both_loops(tmp_path: Path) -> None:
    code, out, err = await _run("sdk_socket", ["--events", "20", "--batched-events", "64"], tmp_path / "sdk.json")

    assert code == 0, f"bench.sdk_socket exited {code}:\n{err[-3000:]}"
    assert "SDK socket:" in out and "\n=====" in out, f"bench.sdk_socket printed no table:\n{out[-2000:]}"
    report = json.loads((tmp_path / "sdk.json").read_text())
    assert report["benchmark"] == "sdk_socket" and report["machine"]["python_loop_ns"] > 0
    rows = report["results"]["rows"]
    assert {(r["frames"], r["loop"]) for r in rows} == {
        (f, loop) for f in ("single", "batched") for loop in ("asyncio", "uvloop")
    }
    for row in rows:  # every client got every event, and each measured its CPU
        assert row["lost"] == 0, row
        assert row["loops_seen"] == [row["loop"]], row  # each subscriber process ran on the loop it names
        assert all(row[f"{c}_cpu_us_per_event"] > 0 for c in ("sdk", "event_socket", "sansio")), row
        assert row["sdk_ratio"] > 0 and row["event_socket_ratio"] > 0
    assert max(r["events_per_frame"] for r in rows if r["frames"] == "batched") > 1  # the server batched them


def test_a_histograms_quantile_is_interpolated_within_its_bucket_as_prometheus_does() -> None:
    inf = float("inf")
    buckets = [(0.001, 60.0), (0.0005, 10.0), (0.0025, 95.0), (0.005, 100.0), (inf, 100.0)]  # cumulative, any order
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.0009)  # 40 of the 50 between 0.5 and 1 ms
    assert histogram_quantile(buckets, 0.05) == pytest.approx(0.00025)  # from 0 in the first bucket
    assert histogram_quantile(buckets, 0.99) == pytest.approx(0.0045)
    assert histogram_quantile([(0.001, 2.0), (inf, 4.0)], 0.99) == 0.001, "in +Inf: the highest finite bound"
    assert histogram_quantile([(0.001, 0.0), (inf, 0.0)], 0.5) is None
    assert histogram_quantile([], 0.5) is None
