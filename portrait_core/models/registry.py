"""The model registry: a name -> a builder plus what other code must know about the model.

    @register_model("cnn_custom", cam_layer="conv3", ...)
    def build(image_size, attributes, **options) -> keras.Model: ...

    model = create_model("cnn_custom", image_size=128, attributes=("gender", "age"))

Every builder returns a flat functional model (no nested base model, no Sequential: tf-keras-vis
cannot explain those) whose input is named "image" (float pixels 0..255, letterboxed) and whose
outputs are one softmax head per attribute, each named after the attribute key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras

from portrait_core.models.layers import ZeroCentre
from portrait_core.schema import ATTRIBUTES, parse_attributes


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., keras.Model]
    description: str
    cam_layer: str | None  # the conv layer Grad-CAM reads; None where CAM does not apply
    presets: dict[str, dict] = field(default_factory=dict)  # "default", "study": training settings
    options: tuple[str, ...] = ()  # builder keyword options this model understands

    @property
    def supports_cam(self) -> bool:
        return self.cam_layer is not None

    @property
    def explain_methods(self) -> tuple[str, ...]:
        return (
            ("gradcam", "gradcam++", "scorecam", "saliency") if self.supports_cam else ("saliency",)
        )


MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str, *, description: str, cam_layer: str | None, presets: dict, options=()
):
    def wrap(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        MODELS[name] = ModelSpec(name, builder, description, cam_layer, presets, tuple(options))
        return builder

    return wrap


def get_spec(name: str) -> ModelSpec:
    _load_builders()
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    return MODELS[name]


def model_names() -> list[str]:
    _load_builders()
    return list(MODELS)


def create_model(name: str, image_size: int, attributes, **options) -> keras.Model:
    """Build a registered model; an unknown name or option is an error naming the valid ones."""
    spec = get_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(
            f"model {name} has no option {', '.join(unknown)}; "
            f"its options are {', '.join(spec.options) or 'none'}"
        )
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
    from portrait_core.models import alexnet, cnn_custom, mlp_custom, resnet50  # noqa: F401
