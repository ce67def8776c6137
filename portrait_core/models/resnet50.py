"""ResNet50 (He et al. 2015) as the study used it: ImageNet weights, the last N layers trained.

Built flat (`ResNet50(input_tensor=...)`, heads on its output tensor), never as a nested layer:
tf-keras-vis cannot explain a nested base model. Frozen batch-norm layers run in inference mode.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import keras
from keras import layers

from portrait_core.models.registry import image_input, register_model, softmax_heads

WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_HOST = ("storage.googleapis.com", 443)
REACH_TIMEOUT_S = 3.0  # a closed network must fail fast, never hang


class WeightsUnavailable(ValueError):
    """ImageNet weights were asked for but cannot be had; the message says how to provide them."""


def keras_cache_file() -> Path:
    return (
        Path(
            keras.config.keras_home()
            if hasattr(keras.config, "keras_home")
            else Path.home() / ".keras"
        )
        / "models"
        / WEIGHTS_FILE
    )


def _host_reachable() -> bool:
    result: list[bool] = []

    def probe():
        try:
            socket.create_connection(WEIGHTS_HOST, timeout=REACH_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # DNS itself can hang: bound it too
    thread.start()
    thread.join(REACH_TIMEOUT_S + 0.5)
    return bool(result and result[0])


def resolve_weights(weights: str | None) -> str | None:
    """'imagenet' | 'none' | a file path -> what keras.applications.ResNet50 takes."""
    if weights in (None, "none", "random"):
        return None
    if weights == "imagenet":
        if keras_cache_file().exists() or _host_reachable():
            return "imagenet"
        raise WeightsUnavailable(
            "ImageNet weights for resnet50 cannot be downloaded here (no network). Put "
            f"{WEIGHTS_FILE} into {keras_cache_file().parent}, or pass --weights PATH to a "
            "weights file, or --weights none to train from random weights"
        )
    path = Path(weights)
    if not path.is_file():
        raise WeightsUnavailable(f"resnet50 weights file {path} does not exist")
    return str(path)


def _copy_weights(source: str, base: keras.Model, image_size: int) -> None:
    """Load ImageNet (or file) weights into a stand-alone ResNet50, then copy them layer by layer.

    Loading straight into the flat graph fails: its source input is ours, so Keras would expect
    our zero-centring layer's weights in the file too.
    """
    donor = keras.applications.ResNet50(
        include_top=False, weights=source, input_shape=(image_size, image_size, 3)
    )
    for layer in donor.layers:
        if layer.weights:
            base.get_layer(layer.name).set_weights(layer.get_weights())


@register_model("resnet50")  # description, CAM layer, presets: models/catalog.py
def build(
    image_size: int,
    attributes,
    weights: str | None = "imagenet",
    unfreeze: int = 10,
    pooling: str = "flatten",
) -> keras.Model:
    if pooling not in ("flatten", "gap"):
        raise ValueError(f"pooling must be 'flatten' or 'gap', not {pooling!r}")
    inputs, x = image_input(image_size)
    source = resolve_weights(weights)
    base = keras.applications.ResNet50(include_top=False, weights=None, input_tensor=x)
    if source is not None:
        _copy_weights(source, base, image_size)
    if unfreeze < 0:
        raise ValueError(f"unfreeze must be 0 or more, not {unfreeze}")
    if unfreeze > len(base.layers):  # the slice below would count from the end instead
        raise ValueError(
            f"unfreeze {unfreeze} is more than ResNet50's {len(base.layers)} layers; "
            f"{len(base.layers)} trains them all"
        )
    # With random weights --unfreeze does not apply: frozen random layers would learn nothing.
    if source is not None:
        for layer in base.layers[: len(base.layers) - unfreeze] if unfreeze else base.layers:
            layer.trainable = False  # a frozen BatchNormalization also runs in inference mode
    features = base.output
    features = (
        layers.Flatten(name="flatten")(features)
        if pooling == "flatten"
        else layers.GlobalAveragePooling2D(name="gap")(features)
    )

    def hidden(f, attr):
        f = layers.Dense(256, activation="relu", name=f"{attr}_dense")(f)
        return layers.Dropout(0.5, name=f"{attr}_dropout")(f)

    return keras.Model(inputs, softmax_heads(features, attributes, hidden), name="resnet50")
