"""What Keras computes during training, made safe for missing labels (class -1).

A missing label weighs 0, and each head's loss is the mean over the labelled pictures of the
*global* batch: the input pipeline folds both into the per-head sample weights before any
distribution strategy splits the batch (`pipeline.labelled_mean_weights`). Keras' own
`ignore_class=-1` divides by the labelled pictures each replica happens to hold, so two
replicas with different shares of missing labels took another step than one device.
"""

from __future__ import annotations

import keras
from keras import ops

from portrait_core.schema import ATTRIBUTES


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


@keras.saving.register_keras_serializable(package="portrait_lab")
class MaskedSparseCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy that is 0 where the label is missing (-1).

    With position_spread the labels are positions between the classes instead of class
    indices (an age's place among the bands, schema.age_position; -1 = missing) and the target
    is spread over the classes around it (position_targets).

    No renormalisation here: Keras' default reduction divides the weighted sum by the replica's
    batch size and by the replicas, and the sample weights carry (global batch / labelled
    pictures in it), so the result is the mean over the labelled pictures of the global batch.
    """

    def __init__(
        self,
        label_smoothing: float = 0.0,
        ordinal_spread: float = 0.0,
        position_spread: float = 0.0,
        name: str = "masked_sparse_crossentropy",
        **kw,
    ):
        super().__init__(name=name, **kw)
        self.label_smoothing = float(label_smoothing)
        self.ordinal_spread = float(ordinal_spread)
        self.position_spread = float(position_spread)

    def call(self, y_true, y_pred):
        log_p = ops.log(ops.clip(y_pred, keras.backend.epsilon(), 1.0))
        if self.position_spread:
            position = ops.reshape(ops.cast(y_true, "float32"), (-1,))
            labelled = ops.greater_equal(position, 0.0)
            target = position_targets(position, y_pred.shape[-1], self.position_spread)
            loss = -ops.sum(target * log_p, -1)
            return self._smoothed(loss, log_p, labelled)
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        labelled = ops.greater_equal(y_true, 0)
        if self.ordinal_spread:
            loss = -ops.sum(
                ordinal_targets(y_true, y_pred.shape[-1], self.ordinal_spread) * log_p, -1
            )
        else:
            loss = keras.losses.sparse_categorical_crossentropy(ops.maximum(y_true, 0), y_pred)
        return self._smoothed(loss, log_p, labelled)

    def _smoothed(self, loss, log_p, labelled):
        if self.label_smoothing:
            # the target (1 - e) on the label plus e spread evenly over all k classes
            spread = -ops.mean(log_p, axis=-1)
            loss = (1.0 - self.label_smoothing) * loss + self.label_smoothing * spread
        return ops.where(labelled, loss, ops.zeros_like(loss))

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "label_smoothing": self.label_smoothing,
            "ordinal_spread": self.ordinal_spread,
            "position_spread": self.position_spread,
        }


def ordinal_targets(y_true, n_classes: int, spread: float):
    """Soft targets for ordered classes (SORD; Diaz & Marathe 2019): class j gets a weight
    exp(-(j - label)^2 / (2 spread^2)), normalised, so a neighbour of the label is a near miss
    and a class far from it a real error. spread is in classes: 0.5 puts 0.79 on a middle label
    and 0.11 on each neighbour."""
    ranks = ops.cast(ops.arange(n_classes), "float32")[None, :]
    label = ops.cast(ops.maximum(y_true, 0), "float32")[:, None]
    weight = ops.exp(-ops.square(ranks - label) / (2.0 * spread * spread))
    return weight / ops.sum(weight, axis=-1, keepdims=True)


def position_targets(position, n_classes: int, spread: float):
    """Soft targets from positions between ordered classes (label distribution learning; Geng
    2016, Gao et al. 2017): a Gaussian of standard deviation `spread` (in classes) around each
    position, its mass over each class's interval [j, j + 1), the first and last intervals open.
    An age band's position comes from the exact age (schema.age_position): with a spread of
    0.3 bands (3 years) a 25-year-old's target is 0.93 on the 20s, a 29-year-old's 0.57 on the
    20s and 0.43 on the 30s. int(position) is the class, so a spread near 0 is the hard label."""
    edges = ops.cast(ops.arange(1, n_classes), "float32")[None, :]
    below = 0.5 * (1.0 + ops.erf((edges - position[:, None]) / (spread * 2.0**0.5)))
    n = ops.shape(position)[0]
    cumulative = ops.concatenate(
        [ops.zeros((n, 1), "float32"), below, ops.ones((n, 1), "float32")], axis=-1
    )
    return cumulative[:, 1:] - cumulative[:, :-1]


def losses_and_metrics(
    attributes,
    label_smoothing: float = 0.0,
    ordinal_spread: float = 0.0,
    position_spread: float = 0.0,
) -> tuple[dict, dict]:
    """Per-head losses that ignore class -1, and per-head labelled accuracy. ordinal_spread
    softens the targets of ordered attributes only (age bands; schema `ordinal`), around their
    class; position_spread does around their position (the labels must then be positions:
    `pipeline.InputPipeline(positions=True)`)."""
    losses = {
        a: MaskedSparseCrossentropy(
            label_smoothing,
            ordinal_spread if ATTRIBUTES[a].ordinal else 0.0,
            position_spread if ATTRIBUTES[a].ordinal else 0.0,
        )
        for a in attributes
    }
    metrics = {a: [LabelledAccuracy()] for a in attributes}
    return losses, metrics
