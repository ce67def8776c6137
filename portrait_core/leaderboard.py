"""Runs side by side: one row per run and attribute, the best run per attribute, model folders.

No TensorFlow here: the Compare and Predict pages read run folders only.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from portrait_core.paths import DEFAULT_MODEL, RUNS
from portrait_core.training.runs import Run, RunStore, read_json

RANK_BY = "balanced_accuracy"  # plain accuracy rewards answering the majority class


def leaderboard(runs_root: str | Path | None = None) -> pd.DataFrame:
    """One row per run and scored attribute. A run whose metrics or config cannot be read is
    left out (Run.problems says why); it never takes the other runs down with it."""
    rows = []
    for run in RunStore(runs_root or RUNS).list():
        metrics, config = run.metrics, run.config
        if not metrics or not config:
            continue
        train, data = _object(config.get("train")), _object(config.get("data"))
        for attr, m in metrics.get("attributes", {}).items():
            if not m.get("n"):
                continue
            rows.append(
                {
                    "run": run.id,
                    "state": run.state,
                    "model": train.get("model"),
                    "attribute": attr,
                    "data": Path(str(data.get("path", ""))).name,
                    "image_size": train.get("image_size"),
                    "accuracy": m["accuracy"],
                    "balanced_accuracy": m["balanced_accuracy"],
                    "macro_f1": m["macro_f1"],
                    "majority_baseline": m["majority_baseline"]["accuracy"],
                    # on the test split; None for runs trained before calibration came in
                    "ece_before": finite(m.get("ece_before")),
                    "ece_after": finite(m.get("ece_after")),
                    "temperature": finite(m.get("temperature")),
                    "params": metrics.get("params"),
                    "train_seconds": metrics.get("train_seconds"),
                    "ms_per_image": metrics.get("ms_per_image"),
                    "n_test": m["n"],
                }
            )
    return pd.DataFrame(rows)


def _object(value) -> dict:
    return value if isinstance(value, dict) else {}


def finite(value) -> float | None:
    """A finite number from a JSON value, else None (absent, null, damaged)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def best_runs(board: pd.DataFrame) -> dict[str, str]:
    """{attribute: run id} with the highest balanced accuracy on its test split."""
    if board.empty:
        return {}
    best = board.sort_values(RANK_BY, ascending=False).drop_duplicates("attribute")
    return dict(zip(best["attribute"], best["run"]))


def model_folders(runs_root: str | Path | None = None) -> dict[str, dict]:
    """Folders that can predict: {label: {"path": str, "attributes": [...]}} (default first)."""
    found = {}
    if (DEFAULT_MODEL / "model.keras").exists():
        config = read_json(DEFAULT_MODEL / "config.json", {})
        found["default (shipped)"] = {
            "path": str(DEFAULT_MODEL),
            "attributes": config.get("attributes", []),
        }
    for run in RunStore(runs_root or RUNS).list():
        if run.model_file.exists() and run.config:
            found[run.id] = {"path": str(run.path), "attributes": run.config.get("attributes", [])}
    return found


def default_choice(attribute: str, folders: dict[str, dict], best: dict[str, str]) -> str | None:
    """Predict's default per attribute: the best run from Compare, else the shipped default."""
    options = [k for k, v in folders.items() if attribute in v["attributes"]]
    if best.get(attribute) in options:
        return best[attribute]
    return options[0] if options else None


__all__ = ["Run", "best_runs", "default_choice", "finite", "leaderboard", "model_folders"]
