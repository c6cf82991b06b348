"""Digests of what a LOOPLINE_HOME holds after runs: warehouse tables and exports.

Two homes that ran the same dates hold equal digests. Run-time measurements are
left out (``ops.runs.detail`` holds elapsed seconds, its pid, host and times say
which process ran the step when); everything else is
compared row for row: ``raw``, ``marts`` and the ``ops`` tables.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ml.config.settings import Settings
from ml.storage.warehouse import connect

# columns that measure the run rather than describe its result (elapsed seconds,
# and which process ran each step, when)
RUN_TIME_COLUMNS = {
    ("ops", "runs"): ("detail", "pid", "host", "started_at", "finished_at")
}


def warehouse_digest(settings: Settings) -> dict[str, str]:
    """One sha256 per table of the ``raw``, ``marts`` and ``ops`` schemas."""
    digests: dict[str, str] = {}
    with connect(settings.warehouse_path, read_only=True) as con:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where schema_name in ('raw', 'marts', 'ops') order by 1, 2"
        ).fetchall()
        for schema, table in tables:
            skip = RUN_TIME_COLUMNS.get((schema, table), ())
            columns = [
                row[0]
                for row in con.execute(
                    "select column_name from duckdb_columns() "
                    "where schema_name = ? and table_name = ? order by column_index",
                    [schema, table],
                ).fetchall()
                if row[0] not in skip
            ]
            select = ", ".join(f'"{c}"' for c in columns)
            rows = con.execute(
                f"select {select} from {schema}.{table} order by all"
            ).fetchall()
            digest = hashlib.sha256(repr(columns).encode())
            for row in rows:
                digest.update(repr(row).encode())
            digests[f"{schema}.{table}"] = f"{len(rows)}:{digest.hexdigest()}"
    return digests


def exports_digest(settings: Settings) -> dict[str, str]:
    """One sha256 per export file (queues, review queue, manifests)."""
    root = settings.exports_dir
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def state_digest(settings: Settings) -> dict[str, str]:
    return warehouse_digest(settings) | {
        f"exports/{name}": value for name, value in exports_digest(settings).items()
    }


def differences(left: dict[str, str], right: dict[str, str]) -> list[str]:
    """The keys whose digests differ (or that only one side has)."""
    return sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))


def decision_rows(settings: Settings) -> int:
    with connect(settings.warehouse_path, read_only=True) as con:
        return int(con.execute("select count(*) from marts.decisions").fetchall()[0][0])


def home_of(path: str | Path) -> Settings:
    return Settings(home=Path(path))
