"""The model registry: a name -> a builder plus what other code must know about the model.

    @register_model("cnn_custom")  # its catalogue entry (catalog.py) says what it is
    def build(image_size, attributes, **options) -> keras.Model: ...

    model = create_model("cnn_custom", image_size=128, attributes=("gender", "age"))

Every builder returns a flat functional model (no nested base model, no Sequential: tf-keras-vis
cannot explain those) whose input is named "image" (float pixels 0..255, letterboxed) and whose
outputs are one softmax head per attribute, each named after the attribute key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import keras

from portrait_core.models.catalog import ModelInfo, check_options, get_info
from portrait_core.models.layers import ZeroCentre
from portrait_core.schema import ATTRIBUTES, parse_attributes


@dataclass(frozen=True)
class ModelSpec(ModelInfo):
    """A catalogue entry (catalog.py) with its builder."""

    builder: Callable[..., keras.Model] | None = None


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str):
    """Attach a builder to the catalogue entry `name` (catalog.py holds what it is)."""

    def wrap(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        info = get_info(name)
        fields = {f.name: getattr(info, f.name) for f in dataclasses.fields(ModelInfo)}
        MODELS[name] = ModelSpec(**fields, builder=builder)
        return builder

    return wrap


def get_spec(name: str) -> ModelSpec:
    get_info(name)  # an unknown name is an error naming the known ones
    _load_builders()
    return MODELS[name]


def model_names() -> list[str]:
    _load_builders()
    return list(MODELS)


def create_model(name: str, image_size: int, attributes, **options) -> keras.Model:
    """Build a registered model; an unknown name or option is an error naming the valid ones."""
    spec = get_spec(name)
    check_options(name, options)
    if image_size < 32:
        raise ValueError(f"image size {image_size} is too small; use 32 pixels or more")
    return spec.builder(image_size, parse_attributes(attributes), **options)


def image_input(image_size: int):
    """The shared stem: an 'image' input (0..255 floats) and its zero-centred tensor."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    return inputs, ZeroCentre(name="zero_centre")(inputs)


def softmax_heads(features, attributes, hidden: Callable | None = None) -> dict:
    """One softmax head per attribute, named after it; `hidden(x, attr)` adds per-head layers.

    A dict, not a list: Keras 3 then takes losses, targets and per-head sample weights as dicts
    keyed by attribute (a list-output model rejects a sample-weight dict). Keras orders
    `model.output_names` alphabetically, so code goes by name, never by position.
    """
    outputs = {}
    for attr in attributes:
        x = hidden(features, attr) if hidden else features
        outputs[attr] = keras.layers.Dense(ATTRIBUTES[attr].n_classes, "softmax", name=attr)(x)
    return outputs


def _load_builders() -> None:
    # Importing the modules runs their @register_model decorators (one file per architecture).
    from portrait_core.models import (  # noqa: F401
        alexnet,
        cnn_custom,
        mlp_custom,
        resnet50,
        small_resnet,
    )
