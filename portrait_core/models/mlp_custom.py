"""MLP-custom, the study's multilayer perceptron: Flatten -> Dense 512 -> 256 -> 128 -> softmax.

It has no conv layer, so CAM methods cannot explain it; saliency (input gradients) can.
"""

from __future__ import annotations

import keras
from keras import layers

from portrait_core.models.registry import image_input, register_model, softmax_heads


@register_model("mlp_custom")  # description, CAM layer, presets: models/catalog.py
def build(image_size: int, attributes, dropout: float = 0.2) -> keras.Model:
    inputs, x = image_input(image_size)
    x = layers.Flatten(name="flatten")(x)
    for units in (512, 256, 128):
        x = layers.Dense(units, activation="relu", name=f"dense{units}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{units}")(x)
    return keras.Model(inputs, softmax_heads(x, attributes), name="mlp_custom")
