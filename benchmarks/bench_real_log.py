"""The prediction layer on a real transaction log, against the classical models.

The log is CDNOW (23,570 customers, 69,659 purchases, 1997-01-01..1998-06-30, the
data set of Fader, Hardie & Lee 2005), read from the files of the ``lifetimes``
package (a dev dependency: only its data is used; nothing is vendored here).

Everything runs through the ``loopline`` command, as the README tells a user:

1. ``loopline import transactions`` of the whole log into a fresh LOOPLINE_HOME;
2. ``loopline rebuild`` of the history with weekly snapshots;
3. for each cut date c, in a copy of that home: ``loopline train --as-of c`` (the
   gate decides; nothing is promoted by hand), then ``loopline run --date c`` (the
   real nightly DAG through Airflow, scoring with the champion if there is one).

Then, on the customers the nightly of c scored (those active in the last 180
days), it compares with the churn labels of (c, c + 30]:

* the model's ``p_churn`` from ``marts.scores`` (ROC AUC and ECE);
* BG/NBD's P(no purchase in 30 days), fitted on the customers known at c;
* recency (days since the last purchase).

Target (issue 16): at each cut the gate promotes unaided, the model's ROC AUC is
at least BG/NBD's + 0.02, and its ECE <= 0.05. The script prints the figures side
by side and exits 1 if a cut scored nothing.

Run: ``.venv/bin/python benchmarks/bench_real_log.py [--cuts 1998-04-28 1998-05-26]``
(cuts are snapshot dates of the weekly rebuild, whose labels (c, c + 30] exist).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np

from ml.config.settings import Settings
from ml.prediction.bgnbd import p_no_purchase
from ml.prediction.metrics import expected_calibration_error, score_metric
from ml.prediction.training import fit_bgnbd_at

REPO = Path(__file__).resolve().parents[1]
LOOPLINE = REPO / ".venv" / "bin" / "loopline"
HORIZON = 30
# the rebuild's weekly snapshots (and so the labelled dates): START + 7k
REBUILD_START = date(1997, 4, 1)
EVERY = 7
AUC_MARGIN = 0.02
MAX_ECE = 0.05


def cdnow_file() -> Path:
    """CDNOW_master.txt inside the installed ``lifetimes`` package."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the lifetimes package (dev dependency) is not installed: make env")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets"
    return path / "CDNOW_master.txt"


def loopline(home: Path, *args: str) -> tuple[float, str]:
    """Run one ``loopline`` command in ``home``; stop on failure."""
    env = dict(os.environ, LOOPLINE_HOME=str(home))
    start = time.perf_counter()
    done = subprocess.run(
        [str(LOOPLINE), *args], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(
            f"loopline {' '.join(args)} failed ({done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return seconds, done.stdout


def gate_of(home: Path) -> tuple[bool, str]:
    """Whether the newest version was promoted, and the gate's reasons."""
    from ml.prediction.registry import list_versions

    tags = list_versions(Settings(home=home))[0].tags
    return tags.get("gate_decision") == "promote", tags.get("gate_reasons", "")


def challenger_scores(home: Path, cut: date) -> dict[str, np.ndarray]:
    """The newest version's p_churn on the snapshot of ``cut``, for a cut whose
    gate refused it (the nightly then scores nothing: it uses the rule fallback)."""
    import pyarrow as pa

    from ml.prediction.registry import list_versions, load_model
    from ml.prediction.score import predict_batch

    settings = Settings(home=home)
    version = list_versions(settings)[0].version
    model = load_model(settings, alias=None, version=version)
    assert model is not None
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        frame = con.execute(
            "select f.*, l.churned from marts.customer_features as f "
            "inner join marts.churn_labels as l using (customer_id, as_of_date) "
            "where f.as_of_date = ?",
            [cut],
        ).df()
    out = {c: frame[c].to_numpy() for c in frame.columns}
    # the nightly's own prediction path (ml.prediction.score), on the same snapshot
    out["p_churn"] = predict_batch(
        model, pa.RecordBatch.from_pandas(frame, preserve_index=False)
    )
    return out


def measure(home: Path, cut: date, promoted: bool) -> dict[str, float]:
    """AUCs and ECE on the customers the nightly of ``cut`` scored (the refused
    challenger's scores on the same snapshot when the gate refused it)."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            """
            select s.p_churn, f.recency_days, f.lifetime_repeat_days,
                f.lifetime_recency_days, f.lifetime_days, l.churned
            from marts.scores as s
            inner join marts.customer_features as f
                on f.customer_id = s.customer_id and f.as_of_date = s.run_date
            inner join marts.churn_labels as l
                on l.customer_id = s.customer_id and l.as_of_date = s.run_date
            where s.run_date = ?
            """,
            [cut],
        ).fetchnumpy()
    if promoted and rows["churned"].size == 0:
        sys.exit(f"the nightly of {cut} scored no customer with a label")
    if not promoted:
        rows = challenger_scores(home, cut)
    y = rows["churned"].astype(int)
    if y.size == 0:
        sys.exit(f"no customer of {cut} has a label: nothing to compare")
    fit = fit_bgnbd_at(Settings(home=home), cut)
    assert fit is not None
    bgnbd = p_no_purchase(
        fit,
        HORIZON,
        rows["lifetime_repeat_days"].astype(float),
        rows["lifetime_recency_days"].astype(float),
        rows["lifetime_days"].astype(float),
    )
    model = np.asarray(rows["p_churn"], dtype=float)
    return {
        "customers": float(y.size),
        "churn_rate": float(y.mean()),
        "model_auc": score_metric("roc_auc", y, model),
        "model_ece": expected_calibration_error(y, model),
        "bgnbd_auc": score_metric("roc_auc", y, bgnbd),
        "bgnbd_ece": expected_calibration_error(y, bgnbd),
        "recency_auc": score_metric("roc_auc", y, rows["recency_days"].astype(float)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--cuts",
        nargs="+",
        default=["1998-04-28", "1998-05-26"],
        help="cut dates on the weekly grid 1997-04-01 + 7k, at most 1998-05-31",
    )
    parser.add_argument("--keep", action="store_true", help="keep the homes")
    args = parser.parse_args()
    cuts = [date.fromisoformat(c) for c in args.cuts]
    off_grid = [c for c in cuts if (c - REBUILD_START).days % EVERY]
    if off_grid:
        sys.exit(f"cuts {off_grid} are not rebuild snapshot dates (1997-04-01 + 7k)")
    root = Path(tempfile.mkdtemp(prefix="loopline-cdnow-"))
    base = root / "base"
    source = cdnow_file()
    print(f"CDNOW log: {source}")
    seconds, _ = loopline(
        base,
        "import",
        "transactions",
        str(source),
        "--customer-col",
        "customer_id",
        "--date-col",
        "date",
        "--amount-col",
        "dollar_value",
        "--date-format",
        "%Y%m%d",
        "--delimiter",
        "whitespace",
    )
    print(f"import   {seconds:6.1f} s")
    seconds, _ = loopline(
        base,
        "rebuild",
        "--start",
        REBUILD_START.isoformat(),
        "--end",
        "1998-06-30",
        "--every",
        str(EVERY),
    )
    print(f"rebuild  {seconds:6.1f} s")
    results: list[tuple[date, bool, str, dict[str, float]]] = []
    for cut in cuts:
        home = root / cut.isoformat()
        shutil.copytree(base, home)
        train_s, _ = loopline(home, "train", "--as-of", cut.isoformat())
        promoted, reasons = gate_of(home)
        run_s, _ = loopline(home, "run", "--date", cut.isoformat())
        figures = measure(home, cut, promoted)
        print(
            f"cut {cut}: train {train_s:.1f} s, nightly {run_s:.1f} s, "
            f"gate {'promoted' if promoted else 'refused'}: {reasons}"
        )
        results.append((cut, promoted, reasons, figures))
    print()
    print(
        f"{'cut':<11} {'customers':>9} {'churn':>6} {'gate':>9} {'model AUC':>9} "
        f"{'BG/NBD':>7} {'recency':>7} {'model-BG':>8} {'model ECE':>9} "
        f"{'BG ECE':>6} {'target':>6}"
    )
    for cut, promoted, _, f in results:
        margin = f["model_auc"] - f["bgnbd_auc"]
        met = promoted and margin >= AUC_MARGIN and f["model_ece"] <= MAX_ECE
        print(
            f"{cut.isoformat():<11} {int(f['customers']):>9,} {f['churn_rate']:>6.3f} "
            f"{'promoted' if promoted else 'refused':>9} {f['model_auc']:>9.4f} "
            f"{f['bgnbd_auc']:>7.4f} {f['recency_auc']:>7.4f} {margin:>+8.4f} "
            f"{f['model_ece']:>9.4f} {f['bgnbd_ece']:>6.4f} "
            f"{'met' if met else 'missed':>6}"
        )
    print(
        f"\ntarget: promoted unaided, model AUC >= BG/NBD + {AUC_MARGIN}, "
        f"model ECE <= {MAX_ECE}. Where the gate refused, the nightly used the rule "
        "fallback and the refused challenger's scores of the same snapshot are shown."
    )
    if args.keep:
        print(f"homes kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
