"""A sweep's folder and everything the pages and the CLI read from it.

    artifacts/sweeps/<name>/
        sweep.json      what the sweep trains: data, model, attributes, trials, seed, runs folder
        space.json      its search space (a valid SPACE file: space.py)
        sweep.db        Optuna's SQLite storage: every trial, its parameters, state and score
        status.json     how the last process left it: completed / stopped / failed, and why
        workers/<pid>.json  one per process working on the sweep, removed when it ends
        STOP            present = stop requested (each process stops after its trial's batch)
        sweep.log       the output of a sweep the app started

The trials themselves are run folders under the sweep's runs folder, each with a sweep.json
naming its sweep and trial. The database is the record of the trials; several processes may work
on one sweep at once (SQLite locks it for each write), and a sweep whose processes were killed
resumes from it. Neither TensorFlow nor Streamlit is imported here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from portrait_core.paths import sweeps_beside
from portrait_core.schema import parse_attributes
from portrait_core.sweeps.space import Param, check_space
from portrait_core.training.runs import (
    NO_PID_GRACE_S,
    process_alive,
    process_start,
    read_json,
    write_json_atomic,
)

SPEC_FILE, SPACE_FILE, DB_FILE = "sweep.json", "space.json", "sweep.db"
STATUS_FILE, WORKERS_DIR, STOP_FILE, LOG_FILE = "status.json", "workers", "STOP", "sweep.log"
TRIAL_TAG = "sweep.json"  # in a trial's run folder
# queued: started by the app, its process not yet at work; interrupted: every process working
# on it was killed (run it again to resume); stopped: by request or its time limit
SWEEP_STATES = ("queued", "running", "completed", "stopped", "interrupted", "failed")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Importances from fewer finished trials than this are noise (and Optuna's PED-ANOVA needs two
# in its top group to say anything).
MIN_IMPORTANCE_TRIALS = 3
SQLITE_WAIT_S = 60  # a writer waits this long for another process's lock on sweep.db
OBJECTIVE = "val balanced accuracy"  # what a trial's score is, in words (the mean over heads)


@dataclass
class SweepSpec:
    """What a sweep trains: the same for all of its trials and all of its processes."""

    name: str
    data: str
    model: str
    attributes: tuple[str, ...]
    trials: int  # finished trials (completed or pruned) wanted in all
    runs: str  # where the trials' run folders go
    seed: int = 0  # the split and weight initialisation of every trial, and Optuna's sampler
    timeout_minutes: float | None = None  # a process starts no trial past it (None = no limit)
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.attributes = parse_attributes(self.attributes)
        if not NAME.match(self.name):
            raise ValueError(
                f"sweep name {self.name!r} must be letters, digits, '.', '_' or '-' "
                "(64 at most, starting with a letter or digit)"
            )
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise ValueError(f"trials must be a whole number above 0, not {self.trials!r}")
        if self.timeout_minutes is not None and not self.timeout_minutes > 0:
            raise ValueError(f"timeout must be above 0 minutes, not {self.timeout_minutes!r}")

    def base(self) -> dict:
        """make_config's keywords shared by every trial (space.config_for)."""
        return {
            "data": self.data,
            "model": self.model,
            "attributes": self.attributes,
            "out": self.runs,
            "seed": self.seed,
        }

    def to_dict(self) -> dict:
        return {**asdict(self), "attributes": list(self.attributes)}

    @classmethod
    def from_dict(cls, data: dict) -> SweepSpec:
        return cls(**data)


@dataclass
class Sweep:
    """One sweep folder. Readers use the properties; runner.py writes."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def spec(self) -> SweepSpec:
        return SweepSpec.from_dict(read_json(self.path / SPEC_FILE, {}))

    @property
    def space(self) -> dict:
        return read_json(self.path / SPACE_FILE, {})

    def params(self) -> list[Param]:
        return check_space(self.space, self.spec.base())

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    # --- Optuna's storage ---------------------------------------------------------------------
    def storage(self):
        """The sweep's SQLite storage; a writer waits for another process's lock, not fails."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        url = f"sqlite:///{(self.path / DB_FILE).resolve()}"
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": SQLITE_WAIT_S}}
        )

    def study(self, storage=None, **kwargs):
        """The sweep's Optuna study (made when the sweep was: prepare_sweep)."""
        import optuna

        return optuna.load_study(study_name=self.name, storage=storage or self.storage(), **kwargs)

    @contextlib.contextmanager
    def reading(self):
        """The study for a quick read (a page's), its connections closed after: a page runs in
        changing threads, and SQLite wants a connection closed by the thread that opened it."""
        storage = self.storage()
        try:
            yield self.study(storage)
        finally:
            storage.remove_session()
            storage.engine.dispose()

    def frozen_trials(self) -> list:
        """Every trial in the storage, oldest first ([] before the storage exists)."""
        if not (self.path / DB_FILE).exists():
            return []
        try:
            with self.reading() as study:
                return study.get_trials(deepcopy=False)
        except KeyError:  # the folder was made, the study not yet
            return []

    # --- processes ----------------------------------------------------------------------------
    def register_worker(self, pid: int | None = None) -> None:
        """Record a process working on this sweep (its start time too: pids are reused)."""
        pid = pid or os.getpid()
        folder = self.path / WORKERS_DIR
        folder.mkdir(exist_ok=True)
        record = {"pid": pid, "pid_start": process_start(pid), "started": time.time()}
        write_json_atomic(folder / f"{pid}.json", record)

    def unregister_worker(self, pid: int | None = None) -> None:
        (self.path / WORKERS_DIR / f"{pid or os.getpid()}.json").unlink(missing_ok=True)

    def workers(self) -> list[int]:
        """The pids of the processes at work on this sweep now (a killed one's file stays,
        and is passed over)."""
        records = (read_json(f, {}) for f in sorted((self.path / WORKERS_DIR).glob("*.json")))
        return [r["pid"] for r in records if process_alive(r.get("pid"), r.get("pid_start"))]

    @property
    def status(self) -> dict:
        return read_json(self.path / STATUS_FILE, {})

    def set_status(self, **fields) -> None:
        status = {**self.status, **fields, "updated": time.time()}
        write_json_atomic(self.path / STATUS_FILE, status)

    @property
    def state(self) -> str:
        """running while any process works on it; else as the last one left it. A sweep whose
        processes all died without a word reads as interrupted (its command resumes it)."""
        if self.workers():
            return "running"
        status = self.status
        state = status.get("state")
        if state in ("completed", "stopped", "failed"):
            return state
        if state == "queued" and time.time() - status.get("updated", 0) <= NO_PID_GRACE_S:
            return "queued"
        return "interrupted"

    def request_stop(self) -> None:
        """Every process of the sweep stops after the current batch of its trial."""
        (self.path / STOP_FILE).touch()

    @property
    def stop_requested(self) -> bool:
        return (self.path / STOP_FILE).exists()

    # --- trials -------------------------------------------------------------------------------
    def trials(self) -> list[dict]:
        """One row per trial, oldest first: number, state (a run's words), objective, params,
        run id, epochs reported, per-head validation scores, error."""
        return [trial_row(t) for t in self.frozen_trials()]

    def finished(self) -> int:
        """Trials that count towards `trials`: completed or pruned."""
        return sum(row["state"] in ("completed", "pruned") for row in self.trials())


def trial_tag(run) -> dict:
    """A run's sweep.json (sweep, folder, trial, params): {} for a run outside any sweep."""
    return read_json(Path(run.path) / TRIAL_TAG, {})


def trial_row(trial) -> dict:
    """A frozen Optuna trial in the words the pages use."""
    state = trial.state.name
    attrs = trial.user_attrs
    if state == "RUNNING" and not process_alive(attrs.get("pid"), attrs.get("pid_start")):
        state = "LOST"  # its process died: failed, once a process of the sweep notices
    words = {
        "COMPLETE": "completed",
        "PRUNED": "pruned",
        "FAIL": "cancelled" if attrs.get("stopped") else "failed",
        "RUNNING": "running",
        "WAITING": "queued",
        "LOST": "failed",
    }
    started, ended = trial.datetime_start, trial.datetime_complete
    return {
        "trial": trial.number,
        "state": words.get(state, state.lower()),
        "objective": trial.value if state == "COMPLETE" else None,
        "params": dict(trial.params),
        "run": attrs.get("run"),
        "epochs": trial.last_step,
        "scores": attrs.get("scores") or {},
        "error": attrs.get("error"),
        "seconds": (ended - started).total_seconds() if started and ended else None,
    }


def trials_frame(rows: list[dict], params: list[Param]):
    """The trials as a table: trial, state, objective, each searched parameter, epochs, run."""
    import pandas as pd

    names = [p.name for p in params if p.searched]
    records = [
        {
            "trial": r["trial"],
            "state": r["state"],
            "objective": r["objective"],
            **{n: r["params"].get(n) for n in names},
            "epochs": r["epochs"],
            "run": r["run"],
        }
        for r in rows
    ]
    columns = ["trial", "state", "objective", *names, "epochs", "run"]
    return pd.DataFrame(records, columns=columns)


def best_trial(rows: list[dict]) -> dict | None:
    """The completed trial with the highest objective (the earliest of equals), or None."""
    done = [r for r in rows if r["state"] == "completed" and r["objective"] is not None]
    return max(done, key=lambda r: (r["objective"], -r["trial"])) if done else None


def parallel_coordinates(rows: list[dict], params: list[Param]) -> list[dict]:
    """Axes for a parallel-coordinates plot of the completed trials: one per searched parameter,
    then the objective. Each: label, values, range, and tickvals/ticktext where the axis is not
    plain numbers (a choice: its index; a log range: log10, ticked at the powers of ten)."""
    done = [r for r in rows if r["state"] == "completed" and r["objective"] is not None]
    axes = []
    for p in (p for p in params if p.searched):
        values = [r["params"].get(p.name) for r in done]
        if p.kind == "choice":
            index = {_key(c): i for i, c in enumerate(p.choices)}
            axes.append(
                {
                    "label": p.name,
                    "values": [index.get(_key(v), -1) for v in values],
                    "range": [0, max(len(p.choices) - 1, 1)],
                    "tickvals": list(range(len(p.choices))),
                    "ticktext": [_text(c) for c in p.choices],
                }
            )
        elif p.log:
            low, high = math.log10(p.low), math.log10(p.high)
            ticks = [float(e) for e in range(math.ceil(low), math.floor(high) + 1)] or [low, high]
            axes.append(
                {
                    "label": f"{p.name} (log)",
                    "values": [math.log10(v) for v in values],
                    "range": [low, high],
                    "tickvals": ticks,
                    "ticktext": [f"{10**t:.0e}" for t in ticks],
                }
            )
        else:
            axes.append({"label": p.name, "values": values, "range": [p.low, p.high]})
    scores = [r["objective"] for r in done]
    axes.append({"label": OBJECTIVE, "values": scores, "range": [0.0, 1.0]})
    return axes


def _key(value) -> str:
    return repr(value)  # True and 1 are equal in Python, not as choices


def _text(value) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "on", False: "off", None: "none"}[value]
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


class NotEnoughTrials(ValueError):
    """Importances cannot be told yet; the message says why, for the page to show."""


def param_importances(sweep: Sweep) -> dict[str, float]:
    """Optuna's importance of each searched parameter for the objective (summing to 1), from
    the completed trials (PED-ANOVA, Optuna's default). Raises NotEnoughTrials below
    MIN_IMPORTANCE_TRIALS, or when the trials are too alike to tell the parameters apart."""
    import optuna

    done = [t for t in sweep.frozen_trials() if t.state.name == "COMPLETE"]
    if len(done) < MIN_IMPORTANCE_TRIALS:
        raise NotEnoughTrials(
            f"parameter importances need {MIN_IMPORTANCE_TRIALS} completed trials; this sweep "
            f"has {len(done)} so far"
        )
    with warnings.catch_warnings(record=True) as caught, sweep.reading() as study:
        warnings.simplefilter("always")
        importances = optuna.importance.get_param_importances(study)
    if any("will be equal" in str(w.message) for w in caught) or not importances:
        raise NotEnoughTrials(
            "the completed trials are too few or too alike to tell the parameters apart; "
            "importances come with more trials"
        )
    return importances


class SweepStore:
    """All sweeps under one folder (default artifacts/sweeps, beside artifacts/runs)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def beside(cls, runs: str | Path) -> SweepStore:
        return cls(sweeps_beside(runs))

    def get(self, name: str) -> Sweep:
        path = self.root / name
        if not (path / SPEC_FILE).is_file():
            raise FileNotFoundError(f"no sweep {name} (looked in {self.root})")
        return Sweep(path)

    def list(self) -> list[Sweep]:
        """Sweeps newest first; a folder without a readable sweep.json is left out."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            try:
                spec = SweepSpec.from_dict(read_json(path / SPEC_FILE, {}))
            except (TypeError, ValueError):  # not a sweep, or a damaged one
                continue
            found.append((spec.created, Sweep(path)))
        return [s for _, s in sorted(found, key=lambda pair: pair[0], reverse=True)]

    def prepare(self, spec: SweepSpec, space: dict) -> Sweep:
        """A new sweep's folder and study, or an existing one to resume.

        Everything is checked first (the space on TrainConfig, the name), so bad input makes
        no folder. Resuming asks for the same data, model, attributes, space, seed and runs
        folder (the trials so far would not compare otherwise); trials and timeout may change.
        """
        check_space(space, spec.base())
        sweep = Sweep(self.root / spec.name)
        stored = read_json(sweep.path / SPEC_FILE)
        if stored:
            _same_sweep(sweep, SweepSpec.from_dict(stored), spec, space)
            spec.created = stored.get("created", spec.created)
        sweep.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(sweep.path / SPEC_FILE, spec.to_dict())
        write_json_atomic(sweep.path / SPACE_FILE, space)
        import optuna

        optuna.create_study(
            study_name=spec.name,
            storage=sweep.storage(),
            direction="maximize",
            load_if_exists=True,
        )
        return sweep


def _same_sweep(sweep: Sweep, stored: SweepSpec, given: SweepSpec, space: dict) -> None:
    """Refuse to resume a sweep with other settings than it was started with."""
    pairs = {
        "data": (str(Path(stored.data).resolve()), str(Path(given.data).resolve())),
        "model": (stored.model, given.model),
        "attributes": (",".join(stored.attributes), ",".join(given.attributes)),
        "seed": (stored.seed, given.seed),
        "runs folder": (str(Path(stored.runs).resolve()), str(Path(given.runs).resolve())),
        "space": (sweep.space, json.loads(json.dumps(space))),  # as space.json holds it
    }
    for what, (before, now) in pairs.items():
        if before != now:
            shown = "" if what == "space" else f" ({before}, not {now})"
            raise ValueError(
                f"sweep {sweep.name} exists with another {what}{shown}: run it with the same "
                "settings to resume it, or give another --name"
            )
