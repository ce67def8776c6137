"""Frozen backbones trained on cached features (training/frozen.py): the same training, faster.

ResNet50 with random weights saved to a file (ImageNet weights cannot be downloaded here; only a
weights file makes the builder freeze layers), at 32 px, its smallest input.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from portrait_core.models import create_model
from portrait_core.models.layers import load_saved_model
from portrait_core.pipeline import InputPipeline, split_data
from portrait_core.training.callbacks import BestModelSaver
from portrait_core.training.config import TrainConfig
from portrait_core.training.frozen import (
    XLA_MIN_PICTURE_EPOCHS,
    CachedTop,
    find_cut,
    fit_inputs,
    plan_cut,
    step_macs,
)
from portrait_core.training.metrics import losses_and_metrics

SIZE = 32  # keras.applications.ResNet50's smallest input
ATTRS = ("gender", "hairstyle")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50.weights.h5"
    donor = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(SIZE, SIZE, 3)
    )
    donor.save_weights(path)
    return str(path)


def resnet(weights_file, unfreeze=10):
    keras.utils.set_random_seed(0)
    return create_model(
        "resnet50", SIZE, ATTRS, weights=weights_file, unfreeze=unfreeze, pooling="gap"
    )


@pytest.mark.parametrize(
    "unfreeze, cut, first",
    [
        (3, "conv5_block2_out", "conv5_block3_3_bn"),  # inside a block: back to its input
        (10, "conv5_block2_out", "conv5_block3_1_conv"),  # the study's set-up: the last block
        (20, "conv5_block1_out", "conv5_block2_1_conv"),  # the study's -20 variant
        (0, "gap", "gender_dense"),  # all of ResNet50 frozen: the pooled features
    ],
)
def test_cut_is_the_last_block_boundary_below_the_first_trainable_layer(
    weights_file, unfreeze, cut, first
):
    found = find_cut(resnet(weights_file, unfreeze))
    assert (found.layer, found.first_trainable) == (cut, first)


def test_no_cache_with_augmentation_or_nothing_frozen(weights_file):
    model = resnet(weights_file)
    assert plan_cut(model, augment=True, balance=None, replicas=1).layer is None
    assert plan_cut(model, augment=False, balance="gender", replicas=1).layer is None
    assert plan_cut(model, augment=False, balance=None, replicas=2).layer is None
    assert plan_cut(model, augment=False, balance=None, replicas=1).layer == "conv5_block2_out"
    random = create_model("resnet50", SIZE, ATTRS, weights="none", unfreeze=10)  # all trained
    assert "nothing is frozen" in find_cut(random).reason
    assert find_cut(create_model("cnn_custom", SIZE, ATTRS)).layer is None


def _fit(weights_file, data, cached: bool, saved=None, planned=20, **compile_options):
    """One epoch, seeded: the top on cached features, or the whole model on the same pictures.

    planned: the epochs the run's config asks for (fit_inputs picks XLA for a long run)."""
    model = resnet(weights_file)
    pipeline = InputPipeline(**data, image_size=SIZE, batch_size=8, seed=0, augment=False)
    model.get_layer("zero_centre").set_mean(pipeline.mean_image())
    # augmentation rules the cache out
    config = TrainConfig(data="unused", augment=not cached, epochs=planned)
    fit_model, train_ds, val_ds, described = fit_inputs(model, pipeline, config, 1, saved or ".")
    if not cached:  # the same picture pipeline, no augmentation
        train_ds, val_ds = pipeline.train_dataset(), pipeline.eval_dataset("val")
    losses, metrics = losses_and_metrics(ATTRS)
    fit_model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=losses, metrics=metrics, **compile_options
    )
    callbacks = [BestModelSaver(saved / "model.keras", whole=model)] if saved else []
    history = fit_model.fit(
        train_ds, validation_data=val_ds, epochs=1, verbose=0, callbacks=callbacks
    )
    pipeline.close()
    return model, fit_model, history.history, described


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    import pandas as pd
    from conftest import labelled_pictures

    dataset = labelled_pictures(tmp_path_factory.mktemp("pictures") / "pics", 48, 0, size=32)
    splits = np.array(["train"] * 32 + ["val"] * 8 + ["test"] * 8)
    return split_data(dataset.table, pd.Series(splits), ATTRS)


@pytest.fixture(scope="module")
def whole_run(weights_file, small_data):
    """The whole model trained on the pictures: what the cached runs are compared with."""
    model, _, history, described = _fit(weights_file, small_data, cached=False)
    assert not described["used"]
    return model, history


def test_cached_training_equals_whole_model_training(weights_file, small_data, whole_run):
    # a short run (32 pictures x 20 epochs): op by op, no XLA, as the whole model runs; the
    # same kernels, so the same arithmetic
    model, top, history, described = _fit(weights_file, small_data, cached=True)
    whole, whole_history = whole_run
    assert described["used"] and not described["xla"] and not top.jit_compile
    assert described["cut_layer"] == "conv5_block2_out"
    # The same layers, batches, seeds and dropout draws: on this CPU the weights came out bit
    # for bit equal. The bound allows for the one thing that may differ elsewhere, the order of
    # float32 sums in a batched convolution (oneDNN picks kernels by shape and CPU), whose
    # rounding (~1e-7 relative) Adam's steps of ~lr = 1e-3 cannot amplify past 1e-5 in 4 steps.
    for a, b in zip(whole.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(whole_history[key], history[key], rtol=1e-5)


def test_top_trains_with_xla_and_the_whole_model_is_saved(
    weights_file, small_data, whole_run, tmp_path
):
    """A long run's top is compiled with XLA. Its kernels sum in another order and its stateless
    random numbers differ from TensorFlow's CPU kernels (other dropout masks), so the run is not
    the whole model's bit for bit: the same training, within the noise of a dropout draw."""
    planned = XLA_MIN_PICTURE_EPOCHS // 32 + 1  # 32 training pictures: just long enough
    model, top, history, described = _fit(weights_file, small_data, True, tmp_path, planned)
    whole, whole_history = whole_run
    assert isinstance(top, CachedTop) and described["used"] and described["xla"]
    assert top.jit_compile
    assert np.isfinite(history["loss"]).all()
    # 4 steps of Adam at 1e-3 from the same start: the validation loss hardly moves either way
    # (measured: 1e-4 relative), and a step moves a weight by at most about lr, so the two runs'
    # trained weights stay within 2 x 4 x 1e-3 (measured: 8.0e-3 where dropout masks differ)
    np.testing.assert_allclose(history["val_loss"], whole_history["val_loss"], rtol=0.02)
    start = resnet(weights_file)
    moved = [
        (np.abs(a - b).max(), np.abs(a - c).max())
        for a, b, c, v in zip(
            model.get_weights(), whole.get_weights(), start.get_weights(), model.weights
        )
        if v.trainable
    ]
    assert all(apart < 1e-2 for apart, _ in moved)
    assert all(trained > 0 for _, trained in moved)  # every trainable weight took its steps
    # the saved model is the whole one, with the trained weights: loads, predicts, explains
    saved = load_saved_model(tmp_path / "model.keras")
    assert [x.name for x in saved.layers] == [x.name for x in start.layers]
    for a, b in zip(saved.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    pictures = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    probabilities = saved.predict(pictures, verbose=0)
    assert sorted(probabilities) == sorted(ATTRS)
    np.testing.assert_allclose(probabilities["gender"].sum(axis=1), 1.0, rtol=1e-5)


def test_step_macs_counts_convolutions_and_dense_layers(weights_file):
    # --unfreeze 10 at 32 px: conv5 runs at 1x1; conv5_block3 (2048->512, 3x3 512->512,
    # 512->2048) and two heads (2048->256->2 and 2048->256->5) are trained
    model = resnet(weights_file)
    macs = step_macs(model, find_cut(model).layer)
    block = 2048 * 512 + 9 * 512 * 512 + 512 * 2048
    heads = 2 * 2048 * 256 + 256 * (2 + 5)
    assert macs.forward_top == block + heads
    # weight gradients of all of them; input gradients of all but the first trained layer
    assert macs.backward == 2 * (block + heads) - 2048 * 512
    assert macs.whole == macs.forward_whole + macs.backward
    assert macs.bound == pytest.approx(macs.whole / (block + heads + macs.backward))
    # ResNet50's convolutions at 32 px: about (32 / 224)^2 of its ~3.9 G MACs at 224 px
    assert 70e6 < macs.forward_whole - heads < 90e6


def _past_run(store, config: TrainConfig, epoch_seconds, train=100, val=20, fill=None):
    from portrait_core.training.runs import write_json_atomic

    run = store.create(config.model, config.attributes)
    described = {"train": config.to_dict(), "data": {"split_sizes": {"train": train, "val": val}}}
    if fill is not None:
        described["frozen_cache"] = {"used": True, "fill_seconds": fill}
    write_json_atomic(run.path / "config.json", described)
    for epoch, seconds in enumerate(epoch_seconds, 1):
        run.append_history({"epoch": epoch, "seconds": seconds, "loss": 1.0})
    return run


def test_duration_estimate_from_earlier_runs_of_the_same_model_and_size(tmp_path):
    from portrait_core import run_view as rv
    from portrait_core.training.runs import RunStore

    store = RunStore(tmp_path)
    options = {"weights": "w.h5", "unfreeze": 10}
    config = TrainConfig(data="d", model="resnet50", image_size=128, epochs=10, augment=False)
    config.options = options
    assert rv.duration_estimate(config, 1000, store.list()) is None
    assert "No time estimate" in rv.describe_estimate(None, config)
    other = TrainConfig(data="d", model="resnet50", image_size=96, augment=False, options=options)
    _past_run(store, other, [50.0, 1.0, 1.0])  # another size: not used
    # 100 training pictures an epoch; the first epoch (slow) is left out: 100 / 2 s = 50 pictures/s
    _past_run(store, config, [30.0, 2.0, 2.0, 2.0], fill=12.0)  # 12 s for 120 pictures
    estimate = rv.duration_estimate(config, 1000, store.list())
    assert estimate["pictures_per_s"] == pytest.approx(50.0)
    assert estimate["per_epoch_s"] == pytest.approx(1000 * 0.7 / 50)
    assert estimate["cache_fill_s"] == pytest.approx(0.1 * 1000 * 0.85)
    assert estimate["seconds"] == pytest.approx(10 * 14 + 85)
    assert rv.describe_estimate(estimate, config).startswith("About 3 min 45 s for 10 epochs")
    assert "1 earlier run " in rv.describe_estimate(estimate, config)
    augmented = TrainConfig(data="d", model="resnet50", image_size=128, options=options)
    assert rv.duration_estimate(augmented, 1000, store.list()) is None  # no cache: other speed
