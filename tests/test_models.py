"""Every registered model: flat functional graph, named heads, finite outputs, learns."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from portrait_core.models import create_model, get_spec, model_names
from portrait_core.models.resnet50 import WeightsUnavailable, resolve_weights
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES
from portrait_core.training.metrics import losses_and_metrics

SIZE = 48


def small(name: str, attributes=ATTRIBUTE_KEYS):
    options = {"weights": "none"} if name == "resnet50" else {}
    return create_model(name, SIZE, attributes, **options)


@pytest.mark.parametrize("name", model_names())
def test_builder_makes_a_flat_model_with_one_named_head_per_attribute(name):
    model = small(name)
    assert sorted(model.output_names) == sorted(ATTRIBUTE_KEYS)
    assert model.input_shape == (None, SIZE, SIZE, 3)
    assert not any(isinstance(layer, (keras.Model, keras.Sequential)) for layer in model.layers)
    spec = get_spec(name)
    if spec.cam_layer:
        assert len(model.get_layer(spec.cam_layer).output.shape) == 4  # a conv feature map
    out = model(np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32"))
    for attr in ATTRIBUTE_KEYS:
        probs = np.asarray(out[attr])
        assert probs.shape == (2, ATTRIBUTES[attr].n_classes)
        assert np.isfinite(probs).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)


@pytest.mark.parametrize("name", model_names())
def test_a_few_training_steps_lower_the_loss(name):
    keras.utils.set_random_seed(0)
    attrs = ("gender", "hairstyle")
    model = small(name, attrs)
    losses, metrics = losses_and_metrics(attrs)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses, metrics=metrics)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (16, SIZE, SIZE, 3)).astype("float32")
    y = {"gender": rng.integers(0, 2, 16), "hairstyle": rng.integers(0, 5, 16)}
    y["hairstyle"][:3] = -1  # missing labels are ignored, not a class
    # Training-mode losses: batch-norm moving averages need far more than 8 steps to settle.
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]


@pytest.mark.parametrize("name", model_names())
def test_single_attribute_model(name):
    model = small(name, ("age",))
    assert model.output_names == ["age"]


def test_unknown_model_and_option_are_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="choose from .*cnn_custom"):
        create_model("vgg", SIZE, ("gender",))
    with pytest.raises(ValueError, match="options are"):
        create_model("cnn_custom", SIZE, ("gender",), unfreeze=3)
    with pytest.raises(ValueError, match="unknown attribute"):
        create_model("cnn_custom", SIZE, ("beard",))


def test_resnet50_imagenet_fails_fast_with_how_to_provide_weights(monkeypatch, tmp_path):
    import portrait_core.models.resnet50 as r

    monkeypatch.setattr(r, "keras_cache_file", lambda: tmp_path / r.WEIGHTS_FILE)
    monkeypatch.setattr(r, "_host_reachable", lambda: False)
    with pytest.raises(WeightsUnavailable, match="--weights"):
        resolve_weights("imagenet")
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        resolve_weights(str(tmp_path / "nope.h5"))
    assert resolve_weights("none") is None


def test_resnet50_unfreeze_trains_only_the_last_layers(monkeypatch, tmp_path):
    # Save random "pretrained" weights to a file, then build from that file with unfreeze=10.
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    weights = tmp_path / "resnet.weights.h5"
    base.save_weights(weights)
    expected = base.get_layer("conv1_conv").get_weights()[0]
    model = create_model("resnet50", SIZE, ("gender",), weights=str(weights), unfreeze=10)
    base_names = {layer.name for layer in base.layers}
    in_base = [
        layer for layer in model.layers if layer.name in base_names and layer.name != "zero_centre"
    ]
    trainable = [layer.name for layer in in_base if layer.trainable and layer.weights]
    frozen_bn = [
        layer for layer in in_base[:-10] if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert trainable and all(name.startswith("conv5_block3") for name in trainable)
    assert frozen_bn and not any(layer.trainable for layer in frozen_bn)
    np.testing.assert_array_equal(model.get_layer("conv1_conv").get_weights()[0], expected)
    # all of them trainable at most; more would have counted the frozen ones from the end
    n = len(keras.applications.ResNet50(include_top=False, weights=None,
                                        input_shape=(SIZE, SIZE, 3)).layers)  # fmt: skip
    whole = create_model("resnet50", SIZE, ("gender",), weights=str(weights), unfreeze=n)
    assert not [layer.name for layer in whole.layers if layer.weights and not layer.trainable]
    with pytest.raises(ValueError, match=r"unfreeze 1000 is more than ResNet50's \d+ layers"):
        create_model("resnet50", SIZE, ("gender",), weights=str(weights), unfreeze=1000)


def test_every_catalogue_entry_has_a_builder_and_every_builder_an_entry():
    from portrait_core.models import CATALOG, MODELS

    assert model_names() == list(MODELS) and sorted(MODELS) == sorted(CATALOG)
    for name, spec in MODELS.items():
        assert spec.builder is not None and spec.presets == CATALOG[name].presets
        assert set(spec.presets) == {"default", "study"}, name
        for preset in spec.presets.values():  # every preset option is one the builder takes
            assert set(preset.get("options", {})) <= set(spec.options), name


def test_an_unknown_model_or_option_is_an_error_naming_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'vgg'; choose from alexnet, cnn_custom"):
        create_model("vgg", SIZE, ("gender",))
    with pytest.raises(ValueError, match="has no option unfreeze; its options are pooling"):
        create_model("cnn_custom", SIZE, ("gender",), unfreeze=3)
