"""AlexNet after Krizhevsky et al. 2012: five conv layers and three dense layers.

Batch norm stands in for local response normalisation. The dense widths scale with the input
area (4096 at 224 px), so a 128 px AlexNet stays trainable on a laptop CPU. The study's own
AlexNet code is lost; this follows the paper.
"""

from __future__ import annotations

import keras
from keras import layers

from portrait_core.models.registry import image_input, register_model, softmax_heads


def dense_width(image_size: int) -> int:
    return max(256, round(4096 * (image_size / 224) ** 2 / 64) * 64)


@register_model("alexnet")  # description, CAM layer, presets: models/catalog.py
def build(image_size: int, attributes, dropout: float = 0.5) -> keras.Model:
    inputs, x = image_input(image_size)
    plan = [  # (filters, kernel, stride, pool after)
        (96, 11, 4, True),
        (256, 5, 1, True),
        (384, 3, 1, False),
        (384, 3, 1, False),
        (256, 3, 1, True),
    ]
    for i, (filters, kernel, stride, pool) in enumerate(plan, start=1):
        x = layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False, name=f"conv{i}_linear"
        )(x)
        x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = layers.Activation("relu", name=f"conv{i}")(x)
        if pool:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    width = dense_width(image_size)
    for i in (6, 7):
        x = layers.Dense(width, activation="relu", name=f"fc{i}")(x)
        x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    return keras.Model(inputs, softmax_heads(x, attributes), name="alexnet")
