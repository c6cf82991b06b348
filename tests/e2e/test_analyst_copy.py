"""End to end: analysts read the published copy while the real nightly DAG runs.

A small world is simulated, its history rebuilt and published. Two analyst
processes then read ``analytics.duckdb`` while ``loopline_nightly`` runs in-process
with ``dag.test()`` and ends with ``publish``:

* one holds a read-only connection open for the whole run; DuckDB would make a
  warehouse writer fail at once if that reader were on the live file, so the run
  succeeding shows that analysts no longer block the pipeline, and every read of
  that connection must give the pre-run snapshot, whole;
* one reconnects again and again; each connection must see either the pre-run
  snapshot or the new one, never a mix (per-table row counts and checksums).

After the run a new connection sees the new snapshot, with the night's decisions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from ml.config.settings import Settings
from ml.storage.warehouse import connect
from tests.e2e.worlds import simulate_world

START = date(2025, 1, 1)
DAYS = 70
NIGHT = START + timedelta(days=DAYS - 1)

# Per-table row count and order-independent checksum of every table and view of a
# database, read through one connection: two equal snapshots hold the same rows.
SNAPSHOT = """
import duckdb

def snapshot(con):
    names = con.execute(
        "select schema_name || '.' || table_name from duckdb_tables() "
        "union all select schema_name || '.' || view_name from duckdb_views() "
        "where not internal order by 1"
    ).fetchall()
    out = {}
    for (name,) in names:
        rows, checksum = con.execute(
            f"select count(*), coalesce(bit_xor(hash(t)), 0) from {name} t"
        ).fetchone()
        out[name] = [int(rows), str(checksum)]
    return out
"""

# An analyst process: reads snapshots of the copy until the stop file appears,
# through one connection held open (hold) or a new connection each time (reopen);
# prints "ready" after its first read, then one JSON line per distinct snapshot.
READER = (
    SNAPSHOT
    + """
import json, sys, time
from pathlib import Path

path, mode, stop = sys.argv[1], sys.argv[2], Path(sys.argv[3])
seen = {}
con = duckdb.connect(path, read_only=True) if mode == "hold" else None
while True:
    if mode == "reopen":
        con = duckdb.connect(path, read_only=True)
    key = json.dumps(snapshot(con), sort_keys=True)
    seen[key] = seen.get(key, 0) + 1
    if mode == "reopen":
        con.close()
    if len(seen) == 1 and seen[key] == 1:
        print("ready", flush=True)
    if stop.exists():
        break
    time.sleep(0.05)  # pacing only: the machine is shared with the pipeline
for key, count in seen.items():
    print(json.dumps({"count": count, "snapshot": json.loads(key)}), flush=True)
"""
)


def snapshot(path: Path) -> dict[str, list]:
    """The snapshot of ``path`` through a fresh read-only connection, read in a
    fresh process (a process that still held the file would be handed its old
    database by DuckDB's instance cache)."""
    code = SNAPSHOT + "\nimport json, sys\n"
    code += "con = duckdb.connect(sys.argv[1], read_only=True)\n"
    code += "print(json.dumps(snapshot(con)))\n"
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def world(
    airflow_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A published world of its own; the DAG's tasks find it through
    LOOPLINE_HOME, while Airflow keeps the session's metadata."""
    from loopline_airflow.runner import configure, ensure_metadata

    from ml.ops.tasks import publish, rebuild

    configure(airflow_settings)
    ensure_metadata(airflow_settings)
    settings = Settings(home=tmp_path_factory.mktemp("analyst-copy"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOOPLINE_HOME", str(settings.root))
        simulate_world(settings, customers=300, seed=5, start=START, days=DAYS)
        rebuild(START, NIGHT - timedelta(days=1), settings=settings)
        publish(NIGHT - timedelta(days=1), settings, step="publish_manual")
        yield settings


def _start_reader(path: Path, mode: str, stop: Path) -> subprocess.Popen[str]:
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), mode, str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    line = reader.stdout.readline()
    assert line == "ready\n", line + (reader.stderr.read() if reader.stderr else "")
    return reader


def _observations(reader: subprocess.Popen[str]) -> list[dict]:
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_readers_of_the_copy_never_block_the_run_nor_see_half_a_copy(
    world: Settings, tmp_path: Path
) -> None:
    from loopline_airflow.runner import run_dag

    before = snapshot(world.analytics_path)
    stop = tmp_path / "stop"
    holding = _start_reader(world.analytics_path, "hold", stop)
    reopening = _start_reader(world.analytics_path, "reopen", stop)
    try:
        outcome = run_dag(world, "loopline_nightly", NIGHT)
    finally:
        stop.touch()
        held = _observations(holding)
        reopened = _observations(reopening)

    assert outcome.ok, outcome.task_states
    assert outcome.task_states["publish"] == "success"
    after = snapshot(world.analytics_path)
    assert after != before

    # the held connection read the pre-run snapshot, whole, the whole time
    assert [o["snapshot"] for o in held] == [before]
    # every new connection saw one snapshot or the other, never a mix
    assert reopened and all(o["snapshot"] in (before, after) for o in reopened)
    assert sum(o["count"] for o in reopened) >= 1

    # the new snapshot is the night's, and it matches the live marts
    con = duckdb.connect(str(world.analytics_path), read_only=True)
    try:
        published = con.execute(
            "select distinct run_date, published_by from ops.publication"
        ).fetchall()
        decided = con.execute(
            "select count(*) from marts.decisions where run_date = ?", [NIGHT]
        ).fetchone()
        queue_day = con.execute(
            "select distinct run_date from reporting.latest_queue"
        ).fetchall()
    finally:
        con.close()
    assert published == [(NIGHT, "publish")]
    assert decided is not None and decided[0] > 0
    assert queue_day in ([], [(NIGHT,)])
    with connect(world.warehouse_path, read_only=True) as live:
        for name, (rows, _) in after.items():
            if name.startswith("marts."):
                count = live.execute(f"select count(*) from {name}").fetchone()
                assert count == (rows,), name
        step = live.execute(
            "select status from ops.runs where run_date = ? and step = 'publish'",
            [NIGHT],
        ).fetchone()
    assert step == ("success",)
