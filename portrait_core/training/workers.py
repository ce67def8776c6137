"""Several machines (`train --distribute multiworker`): TF_CONFIG, the run's name, each worker's folder.

Every worker runs the same `train` command with its own TF_CONFIG, the variable TensorFlow's
MultiWorkerMirroredStrategy reads (Kubernetes' training operators, Slurm scripts and plain hosts
all set it). The workers never talk outside TensorFlow's collectives, so they agree on the run
without talking: its name is `--run-name`, or else derived from TF_CONFIG's cluster and the
training settings (`run_name`), the same on every worker.

Only the chief (task "chief", or worker 0 when there is none: TensorFlow's rule) writes the run
folder. The other workers write the same files into a folder of their own under
`PORTRAIT_LAB_WORKER_DIR` (the system's temporary folder by default), named after the run and the
worker, so that a restarted worker finds its BackupAndRestore files there and restores the same
epoch as the chief (train.py compares every worker's epoch before training, `epoch_mismatch`);
it is removed when the run completes. TensorFlow is not imported here: a bad
TF_CONFIG is reported before it starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from portrait_core.training.config import TrainConfig
from portrait_core.training.runs import Run, RunStore

TF_CONFIG_ENV = "TF_CONFIG"
WORKER_DIR_ENV = "PORTRAIT_LAB_WORKER_DIR"
JOBS = ("chief", "worker")  # MultiWorkerMirroredStrategy's jobs; "ps" and "evaluator" are not
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


@dataclass(frozen=True)
class Worker:
    """This process's place in the cluster TF_CONFIG describes."""

    cluster: dict[str, list[str]]  # job -> ["host:port", ...]
    task_type: str
    task_index: int

    @property
    def is_chief(self) -> bool:
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def n_workers(self) -> int:
        return sum(len(hosts) for hosts in self.cluster.values())

    @property
    def name(self) -> str:
        return f"{self.task_type}{self.task_index}"

    @property
    def tasks(self) -> list[str]:
        """Every worker's name, the chief first (TensorFlow's order)."""
        return [f"{job}{i}" for job in JOBS for i in range(len(self.cluster.get(job, [])))]

    @property
    def position(self) -> int:
        return self.tasks.index(self.name)


def read_tf_config(environ=None) -> Worker:
    """TF_CONFIG checked; a ValueError in one line says what is missing or wrong."""
    raw = (os.environ if environ is None else environ).get(TF_CONFIG_ENV, "").strip()
    if not raw:
        raise ValueError(
            f"--distribute multiworker needs {TF_CONFIG_ENV} set on every worker, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}} (see the README)'
        )
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{TF_CONFIG_ENV} is not valid JSON ({exc.msg})") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f'{TF_CONFIG_ENV} has no "cluster" object of jobs and their hosts')
    for job, hosts in cluster.items():
        if job not in JOBS:
            raise ValueError(
                f'{TF_CONFIG_ENV} has a "{job}" job; multiworker training takes only '
                f"{' and '.join(JOBS)}"
            )
        if (
            not isinstance(hosts, list)
            or not hosts
            or not all(isinstance(h, str) and re.fullmatch(r"\S+:\d+", h) for h in hosts)
        ):
            raise ValueError(f'{TF_CONFIG_ENV}\'s "{job}" must list "host:port" addresses')
    if len(cluster.get("chief", [])) > 1:
        raise ValueError(f"{TF_CONFIG_ENV} lists {len(cluster['chief'])} chiefs; one at most")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ValueError(
            f'{TF_CONFIG_ENV} needs "task": {{"type": one of {", ".join(cluster)}, "index": N}}'
        )
    index = task.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f'{TF_CONFIG_ENV}\'s task "index" must be a whole number, not {index!r}')
    if not 0 <= index < len(cluster[task["type"]]):
        raise ValueError(
            f'{TF_CONFIG_ENV}\'s task index {index} is outside its "{task["type"]}" list '
            f"of {len(cluster[task['type']])}"
        )
    return Worker(cluster={k: list(v) for k, v in cluster.items()}, task_type=task["type"],
                  task_index=index)  # fmt: skip


def run_name(config: TrainConfig, worker: Worker) -> str:
    """The name every worker derives alike: model, attributes, and a digest of the cluster and
    the settings (not the data or output paths, which may differ between hosts)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("data", "out")}
    digest = hashlib.sha1(
        json.dumps([worker.cluster, settings], sort_keys=True).encode()
    ).hexdigest()[:10]
    short = "+".join(a.split("_")[0][:4] for a in config.attributes)
    return f"multiworker-{digest}_{config.model}_{short}"


def worker_root() -> Path:
    """Where the non-chief workers' folders are, on this host."""
    root = os.environ.get(WORKER_DIR_ENV) or Path(tempfile.gettempdir()) / "portrait_lab_workers"
    return Path(root)


def worker_folder(name: str, worker: Worker) -> Path:
    """A non-chief worker's own folder: the same path again when it is restarted."""
    return worker_root() / f"{name}-{worker.name}"


def worker_run(config: TrainConfig, worker: Worker, name: str | None = None) -> tuple[Run, bool]:
    """(this worker's run folder, whether to resume it): the chief's is the run folder in
    config.out, another worker's its own folder (worker_folder). A folder with a backed-up epoch
    is resumed, as a restarted worker must be; a completed run is refused."""
    name = name or run_name(config, worker)
    if not RUN_NAME.fullmatch(name):
        raise ValueError(
            f"run name {name!r} must be letters, digits, '.', '_', '+' or '-' (100 at most)"
        )
    path = Path(config.out) / name if worker.is_chief else worker_folder(name, worker)
    if (path / "status.json").exists():
        run = Run(path)
        if run.state == "completed":
            raise ValueError(
                f"run {name} completed already ({path}); give every worker a new --run-name"
            )
        if run.backed_up_epoch:
            return run, True
        shutil.rmtree(path)  # ended before its first epoch was backed up: start it afresh
    store = RunStore(path.parent)
    return store.create(config.model, config.attributes, run_id=path.name), False


def epoch_mismatch(worker: Worker, epochs: dict[int, int], folder: Path, out: str) -> str | None:
    """None when every worker resumes the same backed-up epoch, else the one line that stops
    them all. epochs: each worker's position in `worker.tasks` -> its backed-up epoch (0: none,
    a fresh start); folder: this worker's run folder (worker_run's), out: the run folders' root.

    Nothing can be resumed from mixed epochs: a worker behind the others (killed while it backed
    up, or restarted without its folder) would train other weights in step with theirs (the
    strategy mirrors the updates, not the weights) and end at another epoch, failing once they
    are done.
    """
    if len(set(epochs.values())) <= 1:
        return None
    name = folder.name if worker.is_chief else folder.name.removesuffix(f"-{worker.name}")
    tasks = worker.tasks
    said = ", ".join(
        f"{tasks[p]}: {f'epoch {e}' if e else 'no backup'}" for p, e in sorted(epochs.items())
    )
    return (
        f"the workers of run {name} backed up different epochs ({said}) and cannot resume "
        f"together: start every worker again with a new --run-name, or delete "
        f"{Path(out) / name} on the chief and {worker_root() / name}-* on the other workers"
    )


def finish_worker(run: Run, worker: Worker) -> None:
    """A non-chief worker's folder goes once the run completed; kept otherwise, to resume."""
    if not worker.is_chief and run.state == "completed":
        shutil.rmtree(run.path, ignore_errors=True)
