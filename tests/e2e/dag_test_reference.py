"""The reference for the Airflow-services tests: the same dates with ``dag.test()``.

Run in its own process (Airflow reads its configuration once per process) on a
copy of the starting home::

    python -m tests.e2e.dag_test_reference HOME FIRST LAST EXTRA OUT.json

``loopline backfill --start FIRST --end LAST`` (the in-process command), then the
state digest; then ``loopline_nightly`` and ``loopline_outcomes`` for EXTRA, then
the digest again. Both digests go to OUT.json.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path


def main(home: str, first: str, last: str, extra: str, out: str) -> None:
    from loopline_airflow.runner import configure, run_dag

    from ml.cli.app import app
    from ml.config.settings import get_settings
    from tests.e2e.state import state_digest

    settings = get_settings()
    assert settings.root == Path(home).resolve(), (settings.root, home)
    configure(settings)
    app(["backfill", "--start", first, "--end", last], standalone_mode=False)
    digests = {"backfill": state_digest(settings)}
    day = date.fromisoformat(extra)
    for dag_id in ("loopline_nightly", "loopline_outcomes"):
        outcome = run_dag(settings, dag_id, day)
        if not outcome.ok:
            raise SystemExit(f"{dag_id} {day} failed: {outcome.task_states}")
    digests["loop"] = state_digest(settings)
    Path(out).write_text(json.dumps(digests, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
