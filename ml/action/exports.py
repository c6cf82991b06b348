"""Action-queue exports: what downstream systems (and the simulator) read.

For run date ``d`` the folder ``exports/dt=d/`` holds one CSV per channel
(``phone.csv``, ``voucher.csv``, ``email.csv``, columns
:data:`ml.contract.schema.EXPORT_COLUMNS`), the review queue ``review.csv`` and
``manifest.json`` (row counts and sha256 of every file, the policy and model
versions). Every file is written to a temporary name in the same folder and renamed
over the old one, the manifest last, so a reader never sees a half-written file.
Rows are sorted and floats printed with a fixed precision, and the manifest has no
timestamps: rerunning a run date rewrites byte-identical files. Every file is
written even when its queue is empty, so a rerun never leaves a stale queue behind.
A temporary file is named ``.<file>.<pid>.tmp``; one whose process is gone (a run
killed before its rename) is deleted by the next write of that folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pandas as pd

from ml.config.policy import PolicyConfig
from ml.config.settings import Settings
from ml.contract.schema import CHANNELS, EXPORT_COLUMNS
from ml.decision.decide_step import DecideSummary
from ml.storage.procs import remove_stale_temp_files

REVIEW_FILE = "review.csv"
MANIFEST_FILE = "manifest.json"
REVIEW_COLUMNS = (
    "decision_id",
    "customer_id",
    "action",
    "expected_value",
    "p_churn",
    "value_at_risk",
    "reason",
    "top_reasons",
    "history",
    "model_version",
    "policy_version",
)
FLOAT_FORMAT = "%.4f"


def export_dir(exports_dir: Path, run_date: date) -> Path:
    """The folder of the queues of ``run_date``."""
    return exports_dir / f"dt={run_date.isoformat()}"


def _write_atomic(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` via a temporary file and a rename; its sha256."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(staged, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staged, path)
    return hashlib.sha256(data).hexdigest()


def _csv_bytes(frame: pd.DataFrame, columns: tuple[str, ...]) -> bytes:
    ordered = frame.loc[:, list(columns)].sort_values(["customer_id", "decision_id"])
    text = ordered.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return text.encode()


@dataclass(frozen=True)
class ExportManifest:
    """What was exported for one run date."""

    run_date: date
    path: Path
    files: dict[str, dict[str, object]]
    policy_version: str
    model_version: str | None
    policy_mode: str

    @property
    def rows(self) -> dict[str, int]:
        return {name: int(str(info["rows"])) for name, info in self.files.items()}


def write_exports(
    exports_dir: Path,
    run_date: date,
    queues: Mapping[str, pd.DataFrame],
    review: pd.DataFrame,
    *,
    policy_version: str,
    model_version: str | None,
    policy_mode: str,
) -> ExportManifest:
    """Write the channel queues (``queues[channel]``, export columns), the review
    queue and the manifest of ``run_date``."""
    folder = export_dir(exports_dir, run_date)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(folder)  # left by a run killed mid-write
    files: dict[str, dict[str, object]] = {}
    for channel in CHANNELS:
        frame = queues.get(channel, pd.DataFrame(columns=list(EXPORT_COLUMNS)))
        data = _csv_bytes(frame, EXPORT_COLUMNS)
        files[f"{channel}.csv"] = {
            "rows": len(frame),
            "sha256": _write_atomic(folder / f"{channel}.csv", data),
        }
    data = _csv_bytes(review, REVIEW_COLUMNS)
    files[REVIEW_FILE] = {
        "rows": len(review),
        "sha256": _write_atomic(folder / REVIEW_FILE, data),
    }
    manifest = {
        "run_date": run_date.isoformat(),
        "policy_version": policy_version,
        "model_version": model_version,
        "policy_mode": policy_mode,
        "files": files,
    }
    _write_atomic(
        folder / MANIFEST_FILE,
        (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(),
    )
    return ExportManifest(
        run_date, folder, files, policy_version, model_version, policy_mode
    )


def read_manifest(exports_dir: Path, run_date: date) -> dict[str, object] | None:
    """The manifest of ``run_date``, or None when nothing was exported."""
    path = export_dir(exports_dir, run_date) / MANIFEST_FILE
    if not path.is_file():
        return None
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def channel_queues(
    decisions: pd.DataFrame, policy: PolicyConfig
) -> dict[str, pd.DataFrame]:
    """The treated decisions of a run date, one export frame per channel."""
    treated = decisions[decisions["arm"] == "treated"]
    out: dict[str, pd.DataFrame] = {}
    for channel in CHANNELS:
        actions = [a.name for a in policy.actions if a.channel == channel]
        rows = treated[treated["action"].isin(actions)]
        out[channel] = pd.DataFrame(
            {
                "decision_id": rows["decision_id"],
                "customer_id": rows["customer_id"],
                "action": rows["action"],
                "expected_value": rows["chosen_ev"].round(4),
                "reason": rows["reason_codes"],
                "model_version": rows["model_version"].fillna(""),
                "policy_version": rows["policy_version"],
            },
            columns=list(EXPORT_COLUMNS),
        )
    return out


def export_decided(
    settings: Settings, decided: DecideSummary, policy: PolicyConfig | None = None
) -> DecideSummary:
    """Write the queues of a decided run date (:func:`ml.decision.decide_step.decide`):
    the channel exports, ``review.csv`` and the manifest. Returns the summary with
    ``exports`` set. ``policy`` defaults to the one in ``policy.yml``."""
    from ml.config.policy import load_policy_config

    policy = policy or load_policy_config()
    review = decided.review
    manifest = write_exports(
        settings.exports_dir,
        decided.run_date,
        channel_queues(decided.decisions, policy),
        review.rename(columns={"reason_codes": "reason"}).assign(
            model_version=review["model_version"].fillna("")
        ),
        policy_version=decided.policy_version,
        model_version=decided.model_version,
        policy_mode=decided.policy_mode,
    )
    return replace(decided, exports=manifest)
