"""CNN-custom, the study's small CNN: Conv64 -> Pool -> Conv128 -> Pool -> Conv256 -> Dense32 -> softmax.

The study flattened the last conv block into Dense(32) heads; our default pools it once more,
flattens it and puts a linear softmax head per attribute on it (see the default preset's note in
catalog.py). The shipped default model is one of these.
"""

from __future__ import annotations

import keras
from keras import layers

from portrait_core.models.registry import image_input, register_model, softmax_heads

# flatten: the study; gap: global average (small, but loses where things are: face outlines
# and beards need position); pool_flatten: pool once more, then flatten (the default).
POOLINGS = ("flatten", "gap", "pool_flatten")


@register_model("cnn_custom")  # description, CAM layer, presets: models/catalog.py
def build(
    image_size: int,
    attributes,
    pooling: str = "pool_flatten",
    batch_norm: bool = False,
    head_units: int = 32,
) -> keras.Model:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    inputs, x = image_input(image_size)
    for i, filters in enumerate((64, 128, 256), start=1):
        name = f"conv{i}_linear" if batch_norm else f"conv{i}"
        activation = None if batch_norm else "relu"
        x = layers.Conv2D(filters, 3, use_bias=not batch_norm, activation=activation, name=name)(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
            x = layers.Activation("relu", name=f"conv{i}")(x)
        if i < 3:
            x = layers.MaxPooling2D(name=f"pool{i}")(x)
    if pooling == "gap":
        features = layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        if pooling == "pool_flatten":  # one more 2x2 pool: 4x fewer dense weights, same layout
            x = layers.MaxPooling2D(name="pool3")(x)
        features = layers.Flatten(name="flatten")(x)

    def hidden(f, attr):
        # The study's Dense(32) per head; 0 = a linear head on the conv features, which cannot
        # die the way a 32-unit ReLU bottleneck can (see the default preset's note).
        if not head_units:
            return layers.Dropout(0.3, name=f"{attr}_dropout")(f)
        return layers.Dense(head_units, activation="relu", name=f"{attr}_dense")(f)

    return keras.Model(inputs, softmax_heads(features, attributes, hidden), name="cnn_custom")
