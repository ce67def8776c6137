"""Run folders: each training run describes itself in `artifacts/runs/<run_id>/`.

    config.json     what reproduces the run: train config, data set, split file, schema version,
                    preprocessing constants
    status.json     queued / running / completed / failed / cancelled, epoch, batch, error
    history.jsonl   one JSON line per epoch, appended and flushed as the epoch ends
    model.keras     the best model by val_loss, replaced atomically
    mean_image.npy  the zero-centring constant (also inside model.keras)
    metrics.json    test-split metrics, written when the run ends
    tensorboard/    TensorBoard logs
    STOP            present = stop requested (written by `stop RUN` or the Stop button)

Every JSON file is written to a temporary name and renamed into place, so a reader (the app,
polling while training goes on) never sees half a file. TensorFlow is not imported here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from portrait_core.paths import RUNS

STATES = ("queued", "running", "completed", "failed", "cancelled")
FINAL_STATES = ("completed", "failed", "cancelled")


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


def read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def new_run_id(model: str, attributes) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    short = "+".join(a.split("_")[0][:4] for a in attributes)
    return f"{stamp}_{model}_{short}"


@dataclass
class Run:
    """One run folder. Readers use the properties; the trainer uses the write methods."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    # --- reading ----------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        return read_json(self.path / "config.json", {})

    @property
    def status(self) -> dict:
        return read_json(self.path / "status.json", {"state": "unknown"})

    @property
    def metrics(self) -> dict | None:
        return read_json(self.path / "metrics.json")

    @property
    def history(self) -> list[dict]:
        """Epoch records so far; a line still being written (no newline yet) is left out."""
        try:
            text = (self.path / "history.jsonl").read_text()
        except FileNotFoundError:
            return []
        rows = []
        for line in text.split("\n")[:-1] if not text.endswith("\n") else text.splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    @property
    def model_file(self) -> Path:
        return self.path / "model.keras"

    @property
    def state(self) -> str:
        status = self.status
        state = status.get("state", "unknown")
        if state in ("queued", "running") and not _alive(status.get("pid")):
            # the process died without saying so (killed -9, machine restarted)
            started = status.get("updated", 0)
            if time.time() - started > 30:
                return "failed"
        return state

    # --- writing (the trainer) --------------------------------------------------------------
    def set_status(self, **fields) -> None:
        status = {**self.status, **fields, "updated": time.time()}
        status.setdefault("created", status["updated"])
        write_json_atomic(self.path / "status.json", status)

    def append_history(self, record: dict) -> None:
        with open(self.path / "history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    # --- control ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask a running run to stop after its current batch (a file, then SIGTERM to be prompt)."""
        (self.path / "STOP").touch()
        status = self.status
        if status.get("state") == "queued":
            self.set_status(state="cancelled", error=None)
        pid = status.get("pid")
        if status.get("state") == "running" and _alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    @property
    def stop_requested(self) -> bool:
        return (self.path / "STOP").exists()


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


class RunStore:
    """All runs under one folder (default artifacts/runs)."""

    def __init__(self, root: str | Path = RUNS):
        self.root = Path(root)

    def create(self, model: str, attributes, run_id: str | None = None) -> Run:
        self.root.mkdir(parents=True, exist_ok=True)
        run_id = run_id or new_run_id(model, attributes)
        path = self.root / run_id
        path.mkdir(parents=False, exist_ok=False)
        run = Run(path)
        run.set_status(state="queued", epoch=0, batch=0)
        return run

    def get(self, run_id: str | Path) -> Run:
        path = Path(run_id)
        if not path.is_dir():
            path = self.root / str(run_id)
        if not (path / "status.json").exists() and not (path / "config.json").exists():
            raise FileNotFoundError(f"no run {run_id} (looked in {self.root})")
        return Run(path)

    def list(self) -> list[Run]:
        """Runs newest first."""
        if not self.root.exists():
            return []
        runs = [Run(p) for p in self.root.iterdir() if p.is_dir() and (p / "status.json").exists()]
        return sorted(runs, key=lambda r: r.id, reverse=True)

    def delete(self, run_id: str) -> None:
        run = self.get(run_id)
        if run.state == "running":
            raise ValueError(f"run {run_id} is still running; stop it first")
        shutil.rmtree(run.path)
