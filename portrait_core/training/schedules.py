"""A warm-up and cosine learning-rate schedule whose length can change while it runs.

With a time budget (`train --max-minutes`) the number of epochs that fit is known only once a
few have been timed, and differs from one machine to the next. `callbacks.TimeBudget` measures
the epochs and sets the schedule's length to the last epoch that fits, so the rate reaches 0
when the budget ends, not at `--epochs` (where a plain cosine would leave it, cut off half-way,
on a slow machine). The length is a variable the compiled training step reads, so a new length
takes effect at the next step without retracing.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="portrait_lab")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """A linear warm-up from 0 to `peak` over `warmup_steps`, then a cosine from `peak` to 0 at
    `total_steps` (and 0 after it): Keras' CosineDecay with a warm-up, with a settable end."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        if total_steps <= warmup_steps:
            raise ValueError(
                f"total_steps ({total_steps}) must be more than warmup_steps ({warmup_steps})"
            )
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = keras.Variable(
            float(total_steps), dtype="float32", trainable=False, name="schedule_total_steps"
        )

    def set_total_steps(self, total_steps: int) -> None:
        """The step at which the rate reaches 0 (at least one step after the warm-up)."""
        self.total_steps.assign(float(max(int(total_steps), self.warmup_steps + 1)))

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(self.warmup_steps)
        warm = self.peak * step / max(warmup, 1.0)
        progress = ops.clip((step - warmup) / ops.maximum(self.total_steps - warmup, 1.0), 0, 1)
        cosine = 0.5 * self.peak * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < warmup, warm, cosine)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": int(ops.convert_to_numpy(self.total_steps)),
        }
