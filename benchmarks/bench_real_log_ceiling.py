"""How much better than BG/NBD can any churn model rank CDNOW's customers?

``bench_real_log.py`` runs the pipeline on CDNOW and finds its model level with
BG/NBD. This script asks whether a stronger model could do better on what the log
holds, outside the pipeline and without its constraints (look-back window,
thinning, calibration, gate), so that the target of issue 16 (BG/NBD + 0.02 AUC)
can be judged against the information in the data.

For every weekly snapshot ``s`` (1997-04-01 + 7k) it computes, from the *full*
history up to ``s``, per customer: repeat count, recency, age, the BG/NBD summary
(``x``, ``t_x``, ``T``), spend and quantity totals and means, the last basket,
inter-purchase gaps (mean, std, last, max, recency over the mean gap), purchases
and spend in the last 30/60/90/180 days, and BG/NBD's P(alive) and P(no purchase
in 30 days) fitted on the customers known at ``s``. The label is "no purchase in
(s, s + 30]". Scored are the customers active in the last 180 days, as the
nightly scores them.

For each cut ``c`` it prints, side by side, on the same customers:

* BG/NBD's P(no purchase in 30 days) and recency (the classical baselines);
* ``hgb_out_of_time``: HistGradientBoosting trained on every earlier snapshot
  whose labels have matured by ``c`` (the pipeline's setting, without its limits);
* ``hgb_in_period_cv``: the same model cross-validated (5 folds) on the customers
  of ``c`` themselves, so there is no drift between training and scoring at all:
  an optimistic ceiling for what these features carry.

Run: ``.venv/bin/python benchmarks/bench_real_log_ceiling.py [--cuts ...]``
(2 cores: about 2 minutes on an idle machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import warnings
from datetime import timedelta
from pathlib import Path

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from ml.prediction.bgnbd import fit_bgnbd, p_alive, p_no_purchase

HORIZON = 30
LOOK_BACK = 180
START = pd.Timestamp("1997-04-01")
LAST_DAY = pd.Timestamp("1998-06-30")
WINDOWS = (30, 60, 90, 180)


def cdnow_path() -> Path:
    """CDNOW_master.txt from the installed ``lifetimes`` package."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or spec.origin is None:
        raise SystemExit("the lifetimes package (a dev dependency) is not installed")
    return Path(spec.origin).parent / "datasets" / "CDNOW_master.txt"


def customer_days(path: Path) -> pd.DataFrame:
    """One row per customer and purchase day: quantity and spend summed."""
    log = pd.read_csv(
        path, sep=r"\s+", header=0, names=["c", "d", "q", "v"], dtype={"d": str}
    )
    log["d"] = pd.to_datetime(log["d"], format="%Y%m%d")
    return log.groupby(["c", "d"], as_index=False).agg(q=("q", "sum"), v=("v", "sum"))


def snapshot(days: pd.DataFrame, s: pd.Timestamp) -> pd.DataFrame:
    """Full-history features of every customer known at ``s``, and the label."""
    hist = days[days["d"] <= s].sort_values(["c", "d"])
    by = hist.groupby("c")
    first, last = by["d"].min(), by["d"].max()
    f = pd.DataFrame({"n": by.size()})
    f["T"] = (s - first).dt.days
    f["rec"] = (s - last).dt.days
    f["tx"] = (last - first).dt.days
    f["x"] = f["n"] - 1
    f["v_sum"], f["v_mean"], f["v_last"] = by["v"].sum(), by["v"].mean(), by["v"].last()
    f["q_sum"], f["q_mean"] = by["q"].sum(), by["q"].mean()
    gaps = hist.assign(gap=by["d"].diff().dt.days).groupby("c")["gap"]
    f["gap_mean"], f["gap_std"] = gaps.mean(), gaps.std()
    f["gap_last"], f["gap_max"] = gaps.last(), gaps.max()
    f["rec_over_gap"] = f["rec"] / f["gap_mean"]
    for w in WINDOWS:
        recent = hist[hist["d"] > s - timedelta(days=w)].groupby("c")
        f[f"n_{w}d"] = recent.size().reindex(f.index, fill_value=0)
        f[f"v_{w}d"] = recent["v"].sum().reindex(f.index, fill_value=0.0)
    future = days[(days["d"] > s) & (days["d"] <= s + timedelta(days=HORIZON))]["c"]
    f["y"] = (~f.index.isin(future.unique())).astype(int)
    x, tx, t = f["x"].to_numpy(), f["tx"].to_numpy() / 7, f["T"].to_numpy() / 7
    params = fit_bgnbd(x, tx, t)
    f["bg_p_no_purchase"] = p_no_purchase(params, HORIZON / 7, x, tx, t)
    f["bg_p_alive"] = p_alive(params, x, tx, t)
    return f[f["rec"] <= LOOK_BACK]


def model() -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        learning_rate=0.03,
        max_iter=300,
        max_leaf_nodes=15,
        min_samples_leaf=200,
        l2_regularization=1.0,
        early_stopping=True,
        random_state=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", nargs="+", default=["1998-04-28", "1998-05-26"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    cuts = [pd.Timestamp(c) for c in args.cuts]
    for c in cuts:
        if (c - START).days % 7 or c + timedelta(days=HORIZON) > LAST_DAY:
            raise SystemExit(
                f"cut {c.date()}: not a weekly snapshot with matured labels"
            )
    days = customer_days(cdnow_path())
    grid = [
        START + timedelta(days=7 * k)
        for k in range(((max(cuts) - START).days // 7) + 1)
    ]
    frames = {s: snapshot(days, s) for s in grid}
    features = [col for col in frames[grid[0]].columns if col != "y"]
    header = (
        f"{'cut':<11} {'customers':>9} {'train rows':>10} {'recency':>8} {'BG/NBD':>7} "
        f"{'hgb_out_of_time':>15} {'hgb_in_period_cv':>16} {'best - BG/NBD':>13}"
    )
    print(header)
    for c in cuts:
        test = frames[c]
        train = pd.concat(
            [f for s, f in frames.items() if s + timedelta(days=HORIZON) <= c],
            ignore_index=True,
        )
        oot = (
            model().fit(train[features], train["y"]).predict_proba(test[features])[:, 1]
        )
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        cv = cross_val_predict(
            model(), test[features], test["y"], cv=folds, method="predict_proba"
        )[:, 1]
        auc = {
            "recency": roc_auc_score(test["y"], test["rec"]),
            "bgnbd": roc_auc_score(test["y"], test["bg_p_no_purchase"]),
            "oot": roc_auc_score(test["y"], oot),
            "cv": roc_auc_score(test["y"], cv),
        }
        best = max(auc["oot"], auc["cv"])
        print(
            f"{c.date()!s:<11} {len(test):>9,} {len(train):>10,} "
            f"{auc['recency']:>8.4f} "
            f"{auc['bgnbd']:>7.4f} {auc['oot']:>15.4f} {auc['cv']:>16.4f} "
            f"{best - auc['bgnbd']:>+13.4f}",
            flush=True,
        )
    print(f"({len(features)} features; churn = no purchase in the next {HORIZON} days)")


if __name__ == "__main__":
    main()
