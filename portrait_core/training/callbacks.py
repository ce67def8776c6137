"""Keras callbacks that make a run folder live: history lines, status, graceful stop, best model."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import keras

from portrait_core.training.runs import Run

STATUS_EVERY_S = 0.5  # the Train page polls every second or two; more writes buy nothing


class RunRecorder(keras.callbacks.Callback):
    """Appends one history line per epoch and keeps status.json's epoch/batch current."""

    def __init__(self, run: Run, epochs: int, steps_per_epoch: int):
        super().__init__()
        self.run, self.epochs, self.steps = run, epochs, steps_per_epoch
        self._last = 0.0
        self._epoch_start = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()
        self.run.set_status(
            state="running", epoch=epoch + 1, epochs=self.epochs, batch=0, steps=self.steps
        )

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
    """Saves the model whenever val_loss improves, atomically (temp file, then rename)."""

    def __init__(self, path: Path, monitor: str = "val_loss"):
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.best = math.inf
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) >= self.best:
            return
        self.best, self.best_epoch = float(value), epoch + 1
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.keras")
        self.model.save(tmp)
        os.replace(tmp, self.path)


class TimeBudget(keras.callbacks.Callback):
    """Ends training after the epoch when another one would likely end past `minutes` of fit.

    The guess for the next epoch is the longest one so far (the first includes decoding and
    tracing, so the guess errs on the safe side). `stopped_epoch` is 0 when the budget held.
    """

    def __init__(self, minutes: float):
        super().__init__()
        self.budget = minutes * 60.0
        self.stopped_epoch = 0
        self._start = self._epoch_start = 0.0
        self._longest = 0.0

    def on_train_begin(self, logs=None):
        self._start = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        self._longest = max(self._longest, now - self._epoch_start)
        if now - self._start + self._longest > self.budget:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True
