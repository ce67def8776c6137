"""Layers that travel inside every saved model, so prediction needs the model folder alone."""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="portrait_lab")
class ZeroCentre(keras.layers.Layer):
    """(x - training split's mean image) / 255, the study's zero-centring.

    The mean image is a non-trainable weight, saved with the model: prediction applies exactly
    the constant training used (the study's zero-centring cell never reached its test set).
    """

    def build(self, input_shape):
        self.mean_image = self.add_weight(
            shape=tuple(input_shape[1:]), initializer="zeros", trainable=False, name="mean_image"
        )

    def call(self, x):
        return (x - self.mean_image) / 255.0

    def set_mean(self, mean: np.ndarray) -> None:
        self.mean_image.assign(np.asarray(mean, dtype="float32"))


def load_saved_model(path, compile: bool = True) -> keras.Model:
    """A model saved by Portrait Lab, loaded with Keras safe mode on.

    Registers what such a file names besides Keras' own classes: this module's layers, the
    training metrics (portrait_core.training.metrics) and the learning-rate schedule
    (portrait_core.training.schedules).
    """
    import portrait_core.training.metrics  # noqa: F401  (registers LabelledAccuracy)
    import portrait_core.training.schedules  # noqa: F401  (registers WarmupCosine)

    return keras.models.load_model(path, safe_mode=True, compile=compile)
