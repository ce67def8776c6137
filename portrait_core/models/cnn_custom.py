"""CNN-custom, the study's small CNN: Conv64 -> Pool -> Conv128 -> Pool -> Conv256 -> Dense32 -> softmax.

The study flattened the last conv block; our default pools it globally and adds batch norm,
which trains faster on a CPU and keeps the model small (the shipped default is one of these).
"""

from __future__ import annotations

import keras
from keras import layers

from portrait_core.models.registry import image_input, register_model, softmax_heads


@register_model(
    "cnn_custom",
    description="The study's 3-conv CNN (Conv64-Conv128-Conv256, Dense 32 per head).",
    cam_layer="conv3",
    options=("pooling", "batch_norm"),
    presets={
        # The study: Adam, batch 125, 30 epochs, EarlyStopping(val_loss, 3), ReduceLROnPlateau(0.2, 1).
        "study": {
            "batch_size": 125,
            "epochs": 30,
            "lr": 1e-3,
            "early_stop_patience": 3,
            "lr_patience": 1,
            "lr_factor": 0.2,
            "options": {"pooling": "flatten", "batch_norm": False},
        },
        "default": {
            "batch_size": 32,
            "epochs": 20,
            "lr": 2e-3,
            "early_stop_patience": 4,
            "lr_patience": 2,
            "lr_factor": 0.3,
            "options": {"pooling": "gap", "batch_norm": True},
        },
    },
)
def build(
    image_size: int, attributes, pooling: str = "gap", batch_norm: bool = True
) -> keras.Model:
    if pooling not in ("flatten", "gap"):
        raise ValueError(f"pooling must be 'flatten' or 'gap', not {pooling!r}")
    inputs, x = image_input(image_size)
    for i, filters in enumerate((64, 128, 256), start=1):
        x = layers.Conv2D(
            filters,
            3,
            use_bias=not batch_norm,
            name=f"conv{i}_linear" if batch_norm else f"conv{i}",
            activation=None if batch_norm else "relu",
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
            x = layers.Activation("relu", name=f"conv{i}")(x)
        if i < 3:
            x = layers.MaxPooling2D(name=f"pool{i}")(x)
    features = (
        layers.Flatten(name="flatten")(x)
        if pooling == "flatten"
        else layers.GlobalAveragePooling2D(name="gap")(x)
    )

    def hidden(f, attr):
        return layers.Dense(32, activation="relu", name=f"{attr}_dense")(f)

    return keras.Model(inputs, softmax_heads(features, attributes, hidden), name="cnn_custom")
