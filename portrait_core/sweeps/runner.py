"""Running a sweep: ask Optuna for a trial's settings, train it as an ordinary run, score its
best model on the validation split, tell Optuna; until the sweep has its trials.

The objective is the mean balanced accuracy over the heads trained, on the validation split:
the test split stays out of the choice, so the best trial's test scores are still honest. A
trial's run reports each epoch's val_loss to Optuna's pruner, which stops a trial that falls
behind the others at the same epoch (run state *pruned*).

A sweep killed (kill -9, a power cut) resumes when its command runs again: Optuna's SQLite
storage has every finished trial, and a trial whose process died is marked failed (it is not
re-run: the sampler proposes again, knowing it). Two processes may work on one sweep: each asks
for its own trials, and neither starts one the sweep no longer needs. TensorFlow is imported by
the first trial, not by this module.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from portrait_core.sweeps.space import config_for, sample
from portrait_core.sweeps.sweep import STOP_FILE, TRIAL_TAG, Sweep
from portrait_core.training.config import TrainConfig
from portrait_core.training.runs import (
    NO_PID_GRACE_S,
    Run,
    RunStore,
    new_run_id,
    process_alive,
    process_start,
    write_json_atomic,
)
from portrait_core.training.train import RunCancelled, run_training

# Optuna's TPE models the good and the bad trials once it has this many; Optuna's own default
# is 10, but a trial costs minutes on a CPU and sweeps here are short (10-30 trials).
STARTUP_TRIALS = 5
# The median pruner compares a trial with the completed ones at the same epoch: not before
# three have completed (a median of fewer says little), never at a trial's first epoch (one
# epoch of a fresh network says more about its learning rate's warm-up than its worth).
PRUNE_AFTER_TRIALS = 3
PRUNE_FROM_EPOCH = 2
# Trials failing one after another (a space the data cannot train, a missing weights file)
# stop the sweep: more of them would fail the same way.
FAILURES_IN_A_ROW = 3


class TrialPruned(RunCancelled):
    """Raised inside the trial's fit when the pruner says stop; run_training treats it as a
    cancel (no test scoring), and the sweep marks the run pruned."""


@dataclass
class TrialRun(Run):
    """A trial's run folder, which also reports to Optuna as training writes it.

    The trainer appends each epoch's record (RunRecorder) and asks `stop_requested` after each
    batch (GracefulStop); a trial hooks in there: the epoch's val_loss goes to the pruner, and
    the first batch after a prune decision raises TrialPruned, which ends the fit at once. The
    sweep's STOP file stops the trial as the run's own would.
    """

    trial: object = None  # the optuna.Trial
    sweep: Sweep | None = None
    epochs: int = 0
    pruned_at: int | None = None  # the epoch after which the pruner stopped the trial

    def append_history(self, record: dict) -> None:
        super().append_history(record)
        loss, epoch = record.get("val_loss"), int(record["epoch"])
        # Optuna's pruners compare in the study's direction (maximise): the loss goes in negated,
        # a loss that was not finite (logged as null) as the worst value there is
        self.trial.report(-loss if loss is not None else -math.inf, epoch)
        if epoch < self.epochs and self.trial.should_prune():
            self.pruned_at = epoch

    @property
    def stop_requested(self) -> bool:
        if self.pruned_at is not None:
            raise TrialPruned(f"pruned after epoch {self.pruned_at}")
        return super().stop_requested or (self.sweep is not None and self.sweep.stop_requested)


def default_pruner():
    import optuna

    return optuna.pruners.MedianPruner(
        n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=PRUNE_FROM_EPOCH
    )


def run_sweep(sweep: Sweep, pruner=None, log: Callable[[str], None] = print) -> str:
    """Work on `sweep` until it has its trials (completed or pruned), its time limit passes, a
    stop is requested or trials keep failing; returns the state this process leaves it in.

    pruner: Optuna's pruner (default: the median pruner above; tests pass one that must prune).
    """
    import optuna

    spec, params = sweep.spec, sweep.params()
    storage = sweep.storage()
    study = sweep.study(storage, pruner=pruner or default_pruner())
    (sweep.path / STOP_FILE).unlink(missing_ok=True)  # starting again is asking it to go on
    sweep.register_worker()
    sweep.set_status(state="running", error=None, reason=None)
    deadline = time.time() + 60 * spec.timeout_minutes if spec.timeout_minutes else None
    terminated = threading.Event()
    previous = _on_sigterm(lambda *_: terminated.set())
    state, error, reason, failures = "completed", None, None, 0
    try:
        while True:
            _fail_lost_trials(sweep, study, storage)
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
            running = sum(t.state.name == "RUNNING" for t in trials)
            wanted = sweep.spec.trials  # read again: another start of the sweep may raise it
            if sweep.stop_requested or terminated.is_set():
                state, reason = "stopped", "a stop was requested"
            elif finished + running >= wanted:  # others may still be running the last ones
                state = "completed"
            elif deadline and time.time() >= deadline:
                state, reason = "stopped", f"its time limit ({spec.timeout_minutes:g} min) passed"
            else:
                # Seeded by the trial's place, not once: a resumed sweep would otherwise draw
                # its first trials' settings again. Alone, a sweep is reproducible; beside
                # another process, each also adds its pid, so the two do not draw alike.
                shared = any(pid != os.getpid() for pid in sweep.workers())
                seed = spec.seed + len(trials) + (1000 * os.getpid() if shared else 0)
                study.sampler = optuna.samplers.TPESampler(
                    seed=seed % 2**32,  # numpy's range of seeds
                    n_startup_trials=STARTUP_TRIALS,
                )
                outcome, message = _run_trial(sweep, study, params, log)
                failures = failures + 1 if outcome == "failed" else 0
                if outcome == "cancelled":
                    state, reason = "stopped", "its trial's run was stopped"
                elif failures >= FAILURES_IN_A_ROW:
                    state, error = "failed", f"{failures} trials failed in a row: {message}"
                else:
                    continue
            break
    except KeyboardInterrupt:
        state, reason = "stopped", "interrupted"
        raise
    except BaseException as exc:  # noqa: BLE001 - any crash must leave the sweep failed
        state, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sweep.unregister_worker()
        if not sweep.workers():  # the last process to leave says how it ended
            sweep.set_status(state=state, error=error, reason=reason, finished=time.time())
    return state


def _on_sigterm(handler):
    """Install a SIGTERM handler (the previous one is returned), where signals can be had."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. the app): the STOP file still works
        return None


def _run_trial(sweep: Sweep, study, params, log) -> tuple[str, str]:
    """One trial, start to end; returns (completed / pruned / failed / cancelled, message)."""
    import optuna

    spec = sweep.spec
    trial = study.ask()
    trial.set_user_attr("pid", os.getpid())  # so that a process that dies leaves its trial
    trial.set_user_attr("pid_start", process_start(os.getpid()))  # known to be lost
    try:
        values = sample(trial, params)
        config = config_for(spec.base(), values)
    except ValueError as exc:
        return _failed(study, trial, f"its settings cannot train: {exc}", log)
    store = RunStore(spec.runs)
    run_id = f"{new_run_id(spec.model, spec.attributes)}_{sweep.name}-t{trial.number}"
    run = TrialRun(
        store.create(spec.model, spec.attributes, run_id=run_id).path,
        trial=trial,
        sweep=sweep,
        epochs=config.epochs,
    )
    tag = {"sweep": sweep.name, "folder": str(sweep.path), "trial": trial.number}
    write_json_atomic(run.path / TRIAL_TAG, {**tag, "params": dict(trial.params)})
    trial.set_user_attr("run", run.id)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    log(f"trial {trial.number}: {shown} -> run {run.id}")
    try:
        run_training(config, run)
    except TrialPruned:  # run_training lets it through: it is still a prune
        pass
    except Exception as exc:  # noqa: BLE001 - the run is marked failed; the sweep goes on
        return _failed(study, trial, f"{type(exc).__name__}: {exc}", log)
    except KeyboardInterrupt:  # Ctrl-C: the trial was stopped, not broken
        trial.set_user_attr("stopped", True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    finally:
        _free_memory()
    state = run.state
    if run.pruned_at is not None and state != "completed":
        from portrait_core.training.callbacks import BACKUP_DIR

        shutil.rmtree(run.path / BACKUP_DIR, ignore_errors=True)  # never resumed
        run.set_status(state="pruned", pruned_after_epoch=run.pruned_at, error=None)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        log(f"trial {trial.number}: pruned after epoch {run.pruned_at}")
        return "pruned", ""
    if state != "completed":  # stopped: by its run's Stop, the sweep's STOP or a SIGTERM
        trial.set_user_attr("stopped", True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log(f"trial {trial.number}: {state}")
        return "cancelled", state
    scores = validation_scores(run, config)
    trial.set_user_attr("scores", scores)
    if not scores:
        return _failed(study, trial, "no head has a labelled validation picture", log)
    objective = sum(scores.values()) / len(scores)
    study.tell(trial, objective)
    log(f"trial {trial.number}: completed, mean val balanced accuracy {objective:.3f}")
    return "completed", ""


def _failed(study, trial, message: str, log) -> tuple[str, str]:
    import optuna

    trial.set_user_attr("error", message)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    log(f"trial {trial.number}: failed: {message}")
    return "failed", message


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _free_memory() -> None:
    """Each trial builds its model in this process: drop the last one's graph and weights."""
    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session()


def _fail_lost_trials(sweep: Sweep, study, storage) -> None:
    """Mark failed every running trial whose process died (killed with its sweep), so that the
    sweep counts it no longer; its run folder already reads as failed (the process died)."""
    import optuna

    study_id = storage.get_study_id_from_name(sweep.name)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if pid is None:  # asked, not yet tagged: give its process a moment
            age = time.time() - t.datetime_start.timestamp() if t.datetime_start else 0
            if age <= NO_PID_GRACE_S:
                continue
        elif process_alive(pid, t.user_attrs.get("pid_start")):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(trial_id, "error", "its sweep process died")
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another process of the sweep got there first


def validation_scores(run: Run, config: TrainConfig) -> dict[str, float]:
    """Balanced accuracy of the run's best model (model.keras) on its validation split, per
    head with labelled pictures there: what the sweep ranks trials by."""
    from sklearn.metrics import balanced_accuracy_score

    from portrait_core.evaluate import head_probabilities
    from portrait_core.models.layers import load_saved_model
    from portrait_core.pipeline import InputPipeline
    from portrait_core.training.train import prepare_data

    _, parts, _ = prepare_data(config)
    pipeline = InputPipeline(
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        image_size=config.image_size,
        batch_size=config.batch_size,
    )
    try:
        model = load_saved_model(run.model_file)
        probs, _, _ = head_probabilities(model, pipeline.eval_dataset("val"))
    finally:
        pipeline.close()
    scores = {}
    for attr, p in probs.items():
        codes = parts["val"].codes[attr]
        keep = codes >= 0
        if keep.any():
            scores[attr] = float(balanced_accuracy_score(codes[keep], p[keep].argmax(axis=1)))
    return scores
