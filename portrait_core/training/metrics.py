"""What Keras computes during training, made safe for missing labels (class -1)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="portrait_lab")
class LabelledAccuracy(keras.metrics.Mean):
    """Accuracy over the labelled samples only: a missing label (-1) is neither right nor wrong."""

    def __init__(self, name: str = "accuracy", **kw):
        super().__init__(name=name, **kw)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        hits = ops.cast(
            ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32"
        )
        labelled = ops.cast(ops.greater_equal(y_true, 0), "float32")
        return super().update_state(hits, sample_weight=labelled)


def losses_and_metrics(attributes) -> tuple[dict, dict]:
    """Per-head losses that ignore class -1, and per-head labelled accuracy."""
    losses = {a: keras.losses.SparseCategoricalCrossentropy(ignore_class=-1) for a in attributes}
    metrics = {a: [LabelledAccuracy()] for a in attributes}
    return losses, metrics
