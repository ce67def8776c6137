"""Run folders: each training run describes itself in `artifacts/runs/<run_id>/`.

    config.json     what reproduces the run: train config, data set, split file, schema version,
                    preprocessing constants
    status.json     queued / running / completed / failed / cancelled / pruned (a sweep's
                    trial stopped early by its pruner), epoch, batch, error,
                    the training process's pid and start time (pid_start)
    history.jsonl   one JSON line per epoch, appended and flushed as the epoch ends
    model.keras     the best model by val_loss, replaced atomically
    mean_image.npy  the zero-centring constant (also inside model.keras)
    metrics.json    test-split metrics, written when the run ends
    tensorboard/    TensorBoard logs
    STOP            present = stop requested (written by `stop RUN` or the Stop button)
    sweep.json      a sweep's trial only: the sweep, the trial's number and parameters

Every JSON file is written to a temporary name and renamed into place, so a reader (the app,
polling while training goes on) never sees half a file. A folder damaged anyway (a disk that
filled up, a hand edit, a copy cut short) never breaks a reader: `Run.problems` says in words
what is wrong, and the file reads as missing. TensorFlow is not imported here.
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

STATES = ("queued", "running", "completed", "failed", "cancelled", "pruned")
FINAL_STATES = ("completed", "failed", "cancelled", "pruned")
ACTIVE_STATES = ("queued", "running")
BACKUP_DIR = "backup"  # in a run folder: Keras' BackupAndRestore files and the callbacks' state
PROCESS_DIED = "the training process died"
NEVER_STARTED = "the training process never started"
# A run is created (queued, no pid) a moment before its process starts and its pid is written;
# only a run without a pid for longer than this has lost its process.
NO_PID_GRACE_S = 30


class BadRunFile(ValueError):
    """A run file that exists but cannot be used; the message says why, naming the file."""


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


def load_json_object(path: Path) -> dict:
    """The JSON object in `path`.

    Raises FileNotFoundError when it is missing, BadRunFile saying what is wrong when it is
    unreadable, not UTF-8 text, not JSON, or JSON that is not an object (every run file is one).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise BadRunFile(f"{path.name} cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRunFile(f"{path.name} is not valid JSON (it is not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise BadRunFile(f"{path.name} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise BadRunFile(f"{path.name} holds {kind}, not a JSON object")
    return data


def read_json(path: Path, default=None):
    """The JSON object in `path`, or `default` when it is missing or damaged (see load_json_object)."""
    try:
        return load_json_object(path)
    except (FileNotFoundError, BadRunFile):
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
        """status.json as readers should see it.

        A queued or running run whose process is gone (killed -9, out of memory, the machine
        restarted) reads as failed at once, with PROCESS_DIED as its error and its last sign of
        life as its end. A damaged status.json reads as state "unknown" (see `problems`).
        """
        status = self._stored_status()
        if status.get("state") in ACTIVE_STATES:
            lost = _lost_process(status)
            if lost:
                status |= {"state": "failed", "error": lost, "finished": status.get("updated")}
        return status

    @property
    def state(self) -> str:
        state = self.status.get("state")
        return state if state in STATES else "unknown"

    @property
    def metrics(self) -> dict | None:
        metrics = read_json(self.path / "metrics.json")
        return metrics if metrics is not None and _metrics_shape_problem(metrics) is None else None

    @property
    def history(self) -> list[dict]:
        """Epoch records so far; a line still being written (no newline yet) is left out, and so
        is any line that is not an epoch record (`problems` names them)."""
        return self._read_history()[0]

    @property
    def problems(self) -> list[str]:
        """What is wrong with this run's folder, in words (empty when nothing is).

        A damaged file reads as missing everywhere else, so that one bad file never breaks a
        page, and other runs are never affected.
        """
        found = []
        for name in ("status.json", "config.json", "request.json"):
            try:
                load_json_object(self.path / name)
            except FileNotFoundError:
                if name == "status.json":  # config.json comes once training starts, and a
                    found.append("status.json is missing")  # CLI run has no request.json
            except BadRunFile as exc:
                found.append(str(exc))
        state = self.state
        try:
            shape = _metrics_shape_problem(load_json_object(self.path / "metrics.json"))
            if shape:
                found.append(shape)
        except FileNotFoundError:
            if state == "completed":
                found.append("metrics.json is missing: the run completed without test metrics")
        except BadRunFile as exc:
            found.append(str(exc))
        _, history_problems, half_line = self._read_history()
        found += history_problems
        if half_line and state not in ACTIVE_STATES:  # a running run may be writing that line
            found.append("history.jsonl ends in a half-written line (left out)")
        return found

    @property
    def model_file(self) -> Path:
        return self.path / "model.keras"

    def _stored_status(self) -> dict:
        return read_json(self.path / "status.json", {"state": "unknown"})

    def _read_history(self) -> tuple[list[dict], list[str], bool]:
        """(epoch records, problems, whether the last line is unfinished)."""
        try:
            raw = (self.path / "history.jsonl").read_bytes()
        except FileNotFoundError:
            return [], [], False
        except OSError as exc:
            return [], [f"history.jsonl cannot be read ({exc.strerror or exc})"], False
        lines = raw.split(b"\n")
        half_line = lines.pop().strip() != b""  # whatever follows the last newline
        rows, bad = [], []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            epoch = record.get("epoch") if isinstance(record, dict) else None
            if isinstance(epoch, int) and not isinstance(epoch, bool):
                rows.append(record)
            else:
                bad.append(number)
        problems = []
        if bad:
            which = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if bad[5:] else "")
            noun = "line" if len(bad) == 1 else "lines"
            verb = "is" if len(bad) == 1 else "are"
            problems.append(f"history.jsonl {noun} {which} {verb} not an epoch record (left out)")
        return rows, problems, half_line

    # --- writing (the trainer) --------------------------------------------------------------
    def set_status(self, **fields) -> None:
        """Merge fields into status.json. A pid is stored with its process's start time, so a
        reader can tell that process from a later one given the same pid."""
        if "pid" in fields:
            fields["pid_start"] = process_start(fields["pid"])
        status = {**self._stored_status(), **fields, "updated": time.time()}
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
        status = self._stored_status()
        if status.get("state") == "queued":
            self.set_status(state="cancelled", error=None)
        pid = status.get("pid")
        if status.get("state") == "running" and process_alive(pid, status.get("pid_start")):
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    @property
    def stop_requested(self) -> bool:
        return (self.path / "STOP").exists()

    @property
    def backed_up_epoch(self) -> int:
        """The last epoch Keras' BackupAndRestore saved in the run's backup folder (0: none);
        the folder is removed when a run ends normally."""
        for name in ("training_metadata.json", "training_metadata.json.bkp"):
            try:
                return int(json.loads((self.path / BACKUP_DIR / name).read_text())["epoch"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return 0

    @property
    def resume_problem(self) -> str | None:
        """Why `train --resume` cannot continue this run, or None: it must have ended without
        finishing (failed, cancelled, killed) after at least one epoch was backed up."""
        state = self.state
        if state in ACTIVE_STATES:
            return f"run {self.id} is still {state}"
        if state == "completed":
            return f"run {self.id} completed: there is nothing to resume"
        if state == "pruned":
            return f"run {self.id} was pruned by its sweep: its settings were not worth finishing"
        if not isinstance(self.config.get("train"), dict):
            return f"run {self.id} has no config.json: it never started training; start a new run"
        if self.backed_up_epoch == 0:
            return f"run {self.id} ended before its first epoch was backed up; start a new run"
        return None


def _lost_process(status: dict) -> str | None:
    """Why an active run's process is known to be gone, or None while it may still be going."""
    pid = status.get("pid")
    if pid is not None:
        return None if process_alive(pid, status.get("pid_start")) else PROCESS_DIED
    # no pid: the launcher writes it right after starting the process
    updated = status.get("updated")
    if isinstance(updated, (int, float)) and time.time() - updated <= NO_PID_GRACE_S:
        return None
    return NEVER_STARTED if status.get("state") == "queued" else PROCESS_DIED


def _metrics_shape_problem(metrics: dict) -> str | None:
    """What makes a metrics.json unusable by the pages and the leaderboard, or None. Only the
    scores they rank by are checked: the trainer writes the rest along with them."""
    scores = metrics.get("attributes")
    if not isinstance(scores, dict):
        return "metrics.json has no per-attribute scores"
    for attribute, m in scores.items():
        numbers = isinstance(m, dict) and all(
            isinstance(m.get(k), (int, float))
            for k in ("accuracy", "balanced_accuracy", "macro_f1")
        )
        if not isinstance(m, dict) or (
            m.get("n") and not (numbers and isinstance(m.get("majority_baseline"), dict))
        ):
            return f"metrics.json lacks the scores of {attribute}"
    return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks after boot) of a process, from /proc; None
    where that cannot be read (no such process, or no /proc: not Linux)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text.rpartition(")")[2].split()  # the command name may hold spaces and ')'
        return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)
    except (OSError, IndexError, ValueError):
        return None


def process_start(pid) -> int | None:
    """The start time of process `pid` (clock ticks after boot), or None where it is unknown."""
    if not _valid_pid(pid):
        return None
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def process_alive(pid, started: int | None = None) -> bool:
    """Whether process `pid` is alive and, where `started` (process_start's answer when the pid
    was recorded) is known, the same process: a pid freed by a dead process can be given to
    another one. A zombie (dead, not yet waited for by its parent) counts as dead."""
    if not _valid_pid(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    stat = _proc_stat(pid)
    if stat is None:  # no /proc: the signal is all there is to go on
        return True
    state, start = stat
    return state not in ("Z", "X") and (started is None or start == started)


def _valid_pid(pid) -> bool:
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**22


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
        return sorted(runs, key=_newest_first, reverse=True)

    def delete(self, run_id: str) -> None:
        run = self.get(run_id)
        if run.state == "running":
            raise ValueError(f"run {run_id} is still running; stop it first")
        shutil.rmtree(run.path)


def _newest_first(run: Run) -> tuple[float, str]:
    """When the run was made (status.json's `created`), then its id: a run named by hand
    (`--run-name`, a multiworker run) sorts by its time, not by its name. A damaged status
    sorts as oldest."""
    status = run._stored_status()
    created = status.get("created") if isinstance(status, dict) else None
    return (float(created) if isinstance(created, (int, float)) else 0.0, run.id)
