"""Keras callbacks that make a run folder live: history lines, status, graceful stop, best model."""

from __future__ import annotations

import math
import os
import signal
import statistics
import time
from pathlib import Path

import keras

from portrait_core.training.runs import BACKUP_DIR, Run  # noqa: F401 (BACKUP_DIR: train.py)

STATUS_EVERY_S = 0.5  # the Train page polls every second or two; more writes buy nothing


class RunRecorder(keras.callbacks.Callback):
    """Appends one history line per epoch and keeps status.json's epoch/batch current."""

    def __init__(self, run: Run, epochs: int, steps_per_epoch: int, budget=None):
        super().__init__()
        self.run, self.epochs, self.steps = run, epochs, steps_per_epoch
        self.budget = budget  # a TimeBudget: status.json's epochs are then the epochs planned
        self._last = 0.0
        self._epoch_start = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()
        self.run.set_status(
            state="running", epoch=epoch + 1, epochs=self.planned(), batch=0, steps=self.steps
        )

    def planned(self) -> int:
        if self.budget is not None and self.budget.planned_epochs:
            return self.budget.planned_epochs
        return self.epochs

    def on_train_batch_end(self, batch, logs=None):
        now = time.time()
        if now - self._last >= STATUS_EVERY_S:
            self._last = now
            self.run.set_status(batch=batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "seconds": round(time.time() - self._epoch_start, 3)}
        for key, value in (logs or {}).items():
            value = float(value)
            record[key] = value if math.isfinite(value) else None
        lr = self.model.optimizer.learning_rate
        record["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
        self.run.append_history(record)
        self.run.set_status(batch=self.steps)


class GracefulStop(keras.callbacks.Callback):
    """Stops after the current batch when the STOP file appears or SIGTERM arrives."""

    def __init__(self, run: Run):
        super().__init__()
        self.run = run
        self.requested = False
        self._previous = None

    def on_train_begin(self, logs=None):
        def handler(signum, frame):
            self.requested = True

        try:
            self._previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread (e.g. a test): the STOP file still works
            self._previous = None

    def on_train_batch_end(self, batch, logs=None):
        if self.requested or self.run.stop_requested:
            self.requested = True
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class BestModelSaver(keras.callbacks.Callback):
    """Saves the model whenever val_loss improves, atomically (temp file, then rename).

    whole: the model to save when fit trains only part of it (training/frozen.py's top, whose
    layers are the whole model's); None saves the model being fitted.
    """

    def __init__(self, path: Path, monitor: str = "val_loss", whole: keras.Model | None = None):
        super().__init__()
        self.path, self.monitor, self.whole = Path(path), monitor, whole
        self.best = math.inf
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) >= self.best:
            return
        self.best, self.best_epoch = float(value), epoch + 1
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.keras")
        (self.whole or self.model).save(tmp)
        os.replace(tmp, self.path)


class TimeBudget(keras.callbacks.Callback):
    """Ends training after the epoch when another one would likely end past `minutes` of fit,
    and plans the epochs that fit, so that a `schedules.WarmupCosine` reaches 0 at the last one.

    An epoch's length runs from the end of the one before (the saving and backing up between
    epochs count). The guess for the next is the median epoch, leaving out a session's first
    (it includes tracing) once a later one has been timed: on shared cores single epochs run
    twice as long (measured on utkface-dev: 16-44 s, median 20 s), and the longest as the guess
    would end the run minutes early and keep moving the schedule's end. After each epoch,
    `planned_epochs` is the last epoch that would likely end within the budget, at most
    `epochs`; the schedule is set to end there. `stopped_epoch` is 0 when the budget held.
    """

    def __init__(
        self,
        minutes: float,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        schedule=None,
    ):
        super().__init__()
        self.budget = minutes * 60.0
        self.epochs, self.steps, self.schedule = epochs, steps_per_epoch, schedule
        self.stopped_epoch = 0
        self.planned_epochs = epochs
        self._start = self._last_end = 0.0
        self._longest = 0.0  # of every epoch
        self._steady: list[float] = []  # the epochs that were not a session's first
        self._session_epochs = 0

    def on_train_begin(self, logs=None):
        self._start = self._last_end = time.time()
        self._session_epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        took, self._last_end = now - self._last_end, now
        self._session_epochs += 1
        self._longest = max(self._longest, took)
        if self._session_epochs > 1:
            self._steady.append(took)
        guess = statistics.median(self._steady) if self._steady else self._longest
        fits = max(0, int((self.budget - (now - self._start)) // guess)) if guess > 0 else 0
        done = epoch + 1
        self._plan(min(done + fits, self.epochs) if self.epochs else done + fits)
        if fits == 0 and not (self.epochs and done >= self.epochs):
            self.stopped_epoch = done
            self.model.stop_training = True

    def _plan(self, epochs: int) -> None:
        if epochs != self.planned_epochs and self.epochs and epochs < self.epochs:
            # Keras' progress lines count to --epochs: say where the run will end instead
            print(f"time budget: {epochs} of {self.epochs} epochs fit", flush=True)
        self.planned_epochs = epochs
        if self.schedule is not None and self.steps:
            self.schedule.set_total_steps(epochs * self.steps)

    def state(self) -> dict:
        """What a resumed run needs: the fit time spent, the epoch guesses and the plan."""
        return {
            "elapsed": time.time() - self._start,
            "longest": self._longest,
            "steady": list(self._steady),
            "planned_epochs": self.planned_epochs,
        }

    def restore(self, state: dict) -> None:
        """Called after on_train_begin: this session's fit time adds to the saved one."""
        self._start = time.time() - state["elapsed"]
        self._longest = state["longest"]
        self._steady = [float(t) for t in state.get("steady", [])]
        if state.get("planned_epochs"):
            self._plan(int(state["planned_epochs"]))


class ResumeState(keras.callbacks.Callback):
    """What BackupAndRestore does not keep: the state of the callbacks that steer training.

    Keras' BackupAndRestore saves the weights, the optimizer (its moments, its step count, the
    learning rate ReduceLROnPlateau set) and the epoch. EarlyStopping and ReduceLROnPlateau
    reset their counters at the start of every fit, so a resumed run would forget how long it
    had waited; BestModelSaver would forget its best loss, and the time budget its time spent.
    This callback writes their state as `callbacks-<epoch>.json` beside the backup each epoch,
    before BackupAndRestore saves (it comes earlier in the list, after the callbacks it reads),
    and puts it back after their own on_train_begin. The two last epochs are kept, so a kill
    between the two writes finds the state of the epoch the weights are from.
    """

    def __init__(
        self,
        folder: Path,
        early,
        plateau,
        saver,
        budget,
        restored: dict | None = None,
        stopper: GracefulStop | None = None,
    ):
        super().__init__()
        self.folder = Path(folder)
        self.stopper = stopper
        self.early, self.plateau, self.saver, self.budget = early, plateau, saver, budget
        self.restored = restored or {}
        self.fit_seconds = float(self.restored.get("fit_seconds", 0.0))
        self._start = 0.0

    def on_train_begin(self, logs=None):
        self._start = time.time()
        state = self.restored
        if not state:
            return
        e = state.get("early_stopping") or {}
        if self.early is not None and e:
            self.early.wait, self.early.best = e["wait"], e["best"]
            self.early.best_epoch = e["best_epoch"]
            if e.get("best_weights_file") and Path(e["best_weights_file"]).exists():
                from portrait_core.models.layers import load_saved_model

                saved = load_saved_model(e["best_weights_file"])
                # by layer name: the model fitted may be a top of the saved one (frozen.py)
                self.early.best_weights = [
                    w
                    for layer in self.model.layers
                    if layer.weights
                    for w in saved.get_layer(layer.name).get_weights()
                ]
        p = state.get("plateau") or {}
        if self.plateau is not None and p:
            self.plateau.wait, self.plateau.best = p["wait"], p["best"]
            self.plateau.cooldown_counter = p["cooldown_counter"]
        s = state.get("saver") or {}
        if s:
            self.saver.best, self.saver.best_epoch = s["best"], s["best_epoch"]
        b = state.get("budget") or {}
        if self.budget is not None and b:
            self.budget.restore(b)

    def seconds(self) -> float:
        """Fit seconds over every session of this run."""
        return self.fit_seconds + time.time() - self._start

    def snapshot(self, epoch: int) -> dict:
        return {
            "epoch": epoch,
            "fit_seconds": self.seconds(),
            "early_stopping": None
            if self.early is None
            else {
                "wait": int(self.early.wait),
                "best": _finite_or_none(self.early.best),
                "best_epoch": int(self.early.best_epoch),
                # the best weights are the saver's model.keras (the same monitor, val_loss)
                "best_weights_file": str(self.saver.path) if self.saver.best_epoch else None,
            },
            "plateau": None
            if self.plateau is None
            else {
                "wait": int(self.plateau.wait),
                "best": _finite_or_none(self.plateau.best),
                "cooldown_counter": int(self.plateau.cooldown_counter),
            },
            "saver": {
                "best": _finite_or_none(self.saver.best),
                "best_epoch": self.saver.best_epoch,
            },
            "budget": None if self.budget is None else self.budget.state(),
        }

    def on_epoch_end(self, epoch, logs=None):
        from portrait_core.training.runs import write_json_atomic

        if _cut_short(self.stopper):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.folder / f"callbacks-{epoch + 1}.json", self.snapshot(epoch + 1))
        old = self.folder / f"callbacks-{epoch - 1}.json"
        old.unlink(missing_ok=True)


def _cut_short(stopper: GracefulStop | None) -> bool:
    """Whether this epoch ends because the user stopped the run: Keras then ends the epoch
    after the current batch and calls on_epoch_end for it, though its batches were not all
    seen. Such an epoch is not backed up: a resumed run starts it again."""
    return stopper is not None and stopper.requested


class EpochBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore (weights, optimizer, epoch; two copies, so a kill while one is
    written leaves the other) for `train --resume`, with two changes: an epoch cut short by a
    stop request is not backed up (_cut_short), and the backup outlives fit, which deletes it
    even when a stop request ended it. train.py removes it once the run completed, so a
    cancelled run, like a failed or killed one, keeps what it needs to resume."""

    def __init__(self, folder: Path, stopper: GracefulStop):
        super().__init__(str(folder), double_checkpoint=True, delete_checkpoint=False)
        self.stopper = stopper

    def on_epoch_end(self, epoch, logs=None):
        if not _cut_short(self.stopper):
            super().on_epoch_end(epoch, logs)


def _finite_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def saved_callback_state(folder: Path, epoch: int) -> dict:
    """The callbacks' state saved with `epoch` ({} when there is none)."""
    import json

    try:
        state = json.loads((Path(folder) / f"callbacks-{epoch}.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict):
        return {}
    for key in ("plateau", "saver"):  # None stands for their infinite starting best
        part = state.get(key)
        if isinstance(part, dict) and part.get("best") is None:
            part["best"] = math.inf
    return state
