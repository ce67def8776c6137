"""The real-faces recipe's parts: small_resnet's preset, AdamW with a warm-up and a cosine,
label smoothing that still ignores missing labels, and the photo augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from portrait_core.training.config import TrainConfig, make_config


def test_the_recipe_is_small_resnets_default_preset(synthetic_small):
    config = make_config(str(synthetic_small), "small_resnet")
    assert (config.optimizer, config.schedule, config.augmentation) == ("adamw", "cosine", "photo")
    assert config.label_smoothing > 0 and config.weight_decay > 0 and config.warmup_epochs > 0
    study = make_config(str(synthetic_small), "small_resnet", "study")
    assert (study.optimizer, study.schedule, study.augmentation) == ("adam", "plateau", "study")
    assert study.label_smoothing == 0 and study.batch_size == 125
    again = TrainConfig.from_dict(config.to_dict())  # request.json / config.json round trip
    assert again == config


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("optimizer", "sgd", "optimizer must be one of adam, adamw"),
        ("schedule", "step", "schedule must be one of plateau, cosine"),
        ("augmentation", "heavy", "augmentation must be one of study, photo"),
        ("label_smoothing", 1.0, "label_smoothing must be in"),
        ("ordinal_spread", -0.5, "ordinal_spread must be in"),
        ("age_spread", 25, "age_spread must be in"),
        ("age_spread", True, "age_spread must be in"),
        ("degrade_share", 1.5, "degrade_share must be in"),
        ("degrade_share", -0.1, "degrade_share must be in"),
        ("weight_decay", -0.1, "weight_decay must be in"),
        ("warmup_epochs", -1, "warmup_epochs must be 0 or more"),
    ],
)
def test_bad_recipe_settings_are_errors_naming_the_choices(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data="x", **{field: value})


def test_degrade_share_needs_the_photo_augmentation():
    """The share sets the photo augmentation's losses: with the study's, or none, it would do
    nothing, so it is an error that says what it needs."""
    for settings in ({"augmentation": "study"}, {"augmentation": "photo", "augment": False}):
        with pytest.raises(ValueError, match="needs augmentation photo"):
            TrainConfig(data="x", degrade_share=0.5, **settings)
    config = TrainConfig(data="x", augmentation="photo", degrade_share=0)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="config key degrade_share should be float or int"):
        TrainConfig.from_dict({"data": "x", "augmentation": "photo", "degrade_share": "half"})


def test_degrade_share_sets_the_three_losses_share_and_nothing_else():
    """photo_settings(share) is PHOTO with that share of the pictures for blur, lower resolution
    and JPEG; the losses built with it degrade every picture at a share of 1 and none at 0."""
    import tensorflow as tf

    from portrait_core import pipeline

    assert pipeline.photo_settings() == pipeline.PHOTO
    heavy = pipeline.photo_settings(0.6)
    assert {k: heavy[k] for k in pipeline.PHOTO_LOSS_SHARES} == dict.fromkeys(
        pipeline.PHOTO_LOSS_SHARES, 0.6
    )
    rest = set(pipeline.PHOTO) - set(pipeline.PHOTO_LOSS_SHARES)
    assert {k: heavy[k] for k in rest} == {k: pipeline.PHOTO[k] for k in rest}
    batch = tf.constant(np.random.default_rng(3).uniform(0, 255, (16, 32, 32, 3)), tf.float32)
    for share, changed in ((0.0, 0), (1.0, 16)):
        out = pipeline._photo_losses(7, pipeline.photo_settings(share))(batch).numpy()
        differs = np.abs(out - batch.numpy()).mean(axis=(1, 2, 3)) > 1
        assert differs.sum() == changed, (share, differs)


def test_label_smoothing_spreads_the_target_and_ignores_missing_labels():
    import keras

    from portrait_core.training.metrics import MaskedSparseCrossentropy

    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], np.float32)
    y = np.array([0, 1, -1])
    plain = keras.ops.convert_to_numpy(MaskedSparseCrossentropy(reduction=None)(y, p))
    smooth = keras.ops.convert_to_numpy(MaskedSparseCrossentropy(0.1, reduction=None)(y, p))
    expected_plain = [-np.log(0.7), -np.log(0.8), 0.0]
    np.testing.assert_allclose(plain, expected_plain, rtol=1e-5)
    spread = -np.log(p).mean(axis=1)
    expected = [0.9 * -np.log(0.7) + 0.1 * spread[0], 0.9 * -np.log(0.8) + 0.1 * spread[1], 0.0]
    np.testing.assert_allclose(smooth, expected, rtol=1e-5)
    # saved with the model: the setting survives get_config / from_config
    again = MaskedSparseCrossentropy.from_config(MaskedSparseCrossentropy(0.1).get_config())
    assert again.label_smoothing == pytest.approx(0.1)


def test_ordinal_targets_make_a_neighbouring_band_a_near_miss():
    import keras

    from portrait_core.training.metrics import (
        MaskedSparseCrossentropy,
        losses_and_metrics,
        ordinal_targets,
    )

    soft = keras.ops.convert_to_numpy(ordinal_targets(np.array([2, 0]), 5, 0.5))
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert soft[0].argmax() == 2 and soft[0, 1] == pytest.approx(soft[0, 3])  # symmetric
    assert soft[0, 1] > 0.05 and soft[0, 0] < 0.01  # a neighbour, not two bands away
    loss = MaskedSparseCrossentropy(ordinal_spread=0.5, reduction=None)
    label = np.array([2, 2, -1])
    near = np.array([[0.0, 0.1, 0.8, 0.1, 0.0]] * 3, np.float32) + 1e-4
    # the same mass off the label, on the neighbours or two bands away
    far = np.array([[0.1, 0.0, 0.8, 0.0, 0.1]] * 3, np.float32) + 1e-4
    near_loss, far_loss = (keras.ops.convert_to_numpy(loss(label, p)) for p in (near, far))
    assert near_loss[0] < far_loss[0] - 1.0 and near_loss[2] == far_loss[2] == 0.0
    plain = MaskedSparseCrossentropy(reduction=None)  # hard targets cannot tell them apart
    assert keras.ops.convert_to_numpy(plain(label, near))[0] == pytest.approx(
        keras.ops.convert_to_numpy(plain(label, far))[0]
    )
    # only ordered attributes get it, and it survives get_config / from_config
    losses, _ = losses_and_metrics(("gender", "age"), 0.1, 0.5)
    assert (losses["gender"].ordinal_spread, losses["age"].ordinal_spread) == (0.0, 0.5)
    again = MaskedSparseCrossentropy.from_config(losses["age"].get_config())
    assert again.ordinal_spread == pytest.approx(0.5)


def test_an_exact_age_has_a_place_among_the_bands():
    from portrait_core.schema import ATTRIBUTES, AgeOutOfRange, age_band, age_position

    assert age_position(29) == pytest.approx(0.95) and age_position(30) == pytest.approx(1.05)
    assert age_position(45) == pytest.approx(2.55) and age_position(120) == pytest.approx(4.99)
    for years in range(20, 121):  # the whole part is the band, at every age
        assert int(age_position(years)) == ATTRIBUTES["age"].index(age_band(years)), years
    with pytest.raises(AgeOutOfRange):
        age_position(19)


def test_soft_targets_from_exact_ages_follow_how_near_a_band_edge_the_age_is():
    import keras

    from portrait_core.schema import age_position
    from portrait_core.training.metrics import (
        LabelledAccuracy,
        MaskedSparseCrossentropy,
        losses_and_metrics,
        position_targets,
    )

    ages = np.array([age_position(y) for y in (25, 29, 61)], np.float32)
    soft = keras.ops.convert_to_numpy(position_targets(ages, 5, 0.3))  # 3 years
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert soft[0, 0] > 0.9  # mid-20s: the 20s
    assert soft[1, 0] > soft[1, 1] > 0.35  # 29: 20s, and nearly as much 30s
    assert soft.argmax(axis=1)[2] == 4 and soft[2, 3] > 0.2  # 61: 60+, partly 50s
    assert soft[0, 2:].sum() < 1e-4  # never two bands away
    hard = keras.ops.convert_to_numpy(position_targets(ages, 5, 1e-3))  # no spread: the band
    np.testing.assert_allclose(hard, np.eye(5)[[0, 0, 4]], atol=1e-6)

    # answering 30s costs less for the 29-year-old than for the 25-year-old; hard labels
    # (both 20s) cannot tell them apart; a missing label (-1) costs nothing
    loss = MaskedSparseCrossentropy(position_spread=0.3, reduction=None)
    thirties = np.array([[0.05, 0.9, 0.02, 0.02, 0.01]] * 3, np.float32)
    got = keras.ops.convert_to_numpy(loss(np.array([ages[1], ages[0], -1.0]), thirties))
    assert got[0] < got[1] - 0.5 and got[2] == 0.0
    plain = keras.ops.convert_to_numpy(
        MaskedSparseCrossentropy(reduction=None)(np.array([0, 0]), thirties[:2])
    )
    assert plain[0] == pytest.approx(plain[1])
    # accuracy reads the band from the position
    accuracy = LabelledAccuracy()
    accuracy.update_state(np.array([0.95, 1.05, -1.0]), thirties)
    assert float(accuracy.result()) == pytest.approx(0.5)  # 30s is right for 30, not for 29

    losses, _ = losses_and_metrics(("gender", "age"), 0.1, 0.0, 0.3)
    assert (losses["gender"].position_spread, losses["age"].position_spread) == (0.0, 0.3)
    again = MaskedSparseCrossentropy.from_config(losses["age"].get_config())
    assert again.position_spread == pytest.approx(0.3)
    with pytest.raises(ValueError, match="give one, not both"):
        TrainConfig(data="x", age_spread=3, ordinal_spread=0.5)


def test_the_pipeline_gives_age_positions_where_the_years_are_known():
    import pandas as pd

    from portrait_core.data.table import make_table
    from portrait_core.pipeline import SplitData, split_data, targets

    table = make_table(
        [
            {"path": "a", "gender": "male", "age": "20s", "age_years": 29.0},
            {"path": "b", "age": "40s"},  # a band without years
            {"path": "c", "gender": "female"},  # no age at all
        ]
    )
    (train,) = [split_data(table, pd.Series(["train"] * 3), ("gender", "age"))["train"]]
    np.testing.assert_allclose(train.positions["age"], [0.95, 2.5, -1.0])
    y, w = targets(train, None, positions=True)
    assert y["age"].dtype == np.float32 and y["gender"].dtype == np.int32
    np.testing.assert_allclose(y["age"], [0.95, 2.5, -1.0])
    np.testing.assert_array_equal(y["gender"], [0, -1, 1])
    np.testing.assert_array_equal(w["age"], [1.0, 1.0, 0.0])
    codes, _ = targets(train, None)  # without: the class indices, as before
    assert codes["age"].dtype == np.int32 and list(codes["age"]) == [0, 2, -1]
    # a split built without positions (another data set evaluated) has its bands' middles
    bare = SplitData(train.paths, train.codes)
    np.testing.assert_allclose(targets(bare, None, positions=True)[0]["age"], [0.5, 2.5, -1.0])


def test_cosine_schedule_warms_up_then_falls_to_zero():
    from portrait_core.training.train import optimizer_for

    config = TrainConfig(
        data="x", epochs=10, lr=0.01, optimizer="adamw", weight_decay=0.05,
        schedule="cosine", warmup_epochs=2,
    )  # fmt: skip
    optimizer = optimizer_for(config, steps_per_epoch=5)
    schedule = optimizer._learning_rate  # the schedule object, called with the step
    rate = [float(schedule(step)) for step in (0, 5, 10, 30, 50)]
    assert rate[0] == pytest.approx(0.0, abs=1e-9) and rate[1] == pytest.approx(0.005)
    assert rate[2] == pytest.approx(0.01) and 0 < rate[3] < 0.01
    assert rate[4] == pytest.approx(0.0, abs=1e-6)
    assert type(optimizer).__name__ == "AdamW" and optimizer.weight_decay == pytest.approx(0.05)
    plateau = optimizer_for(TrainConfig(data="x", lr=0.002), steps_per_epoch=5)
    assert type(plateau).__name__ == "Adam" and float(plateau.learning_rate) == pytest.approx(0.002)


def test_photo_augmentation_keeps_shape_and_range_and_changes_pictures():
    import tensorflow as tf

    from portrait_core.pipeline import augmenter

    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (16, 48, 48, 3)).astype(np.float32)
    augment = augmenter(seed=3, kind="photo")
    out = augment(tf.constant(batch), training=True).numpy()
    assert out.shape == batch.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert np.abs(out - batch).mean() > 5  # not the same pictures
    with pytest.raises(ValueError, match="'study' or 'photo'"):
        augmenter(seed=3, kind="heavy")


def test_photo_augmentation_fills_no_black_corners():
    """Rotations, shifts and zooming out fill the corners by reflection: a face chip grows no
    black wedges that real test pictures never have (on utkface-dev: gender 0.889 against 0.860
    for black corners run beside it, README "Real faces"). A uniform grey picture stays uniform;
    the study's augmentation, which fills with black as the study's ImageDataGenerator setting
    did, shows what the check catches. (Whether this batch is blurred is up to the seed: the
    blur's mirrored borders are checked below, against SciPy.)"""
    import tensorflow as tf

    from portrait_core.pipeline import augmenter

    grey = tf.constant(np.full((16, 48, 48, 3), 128.0, np.float32))
    photo = augmenter(seed=3, kind="photo")(grey, training=True).numpy()
    spread = photo.max(axis=(1, 2, 3)) - photo.min(axis=(1, 2, 3))
    assert spread.max() <= 4.0, spread  # JPEG may move a uniform picture by a level or two
    assert np.abs(photo - 128.0).max() > 5  # the brightness still changed
    study = augmenter(seed=3, kind="study")(grey, training=True).numpy()
    assert (study.max(axis=(1, 2, 3)) - study.min(axis=(1, 2, 3))).max() > 100


def test_photo_blur_is_a_gaussian_with_mirrored_borders():
    """pipeline._blur against SciPy's Gaussian filter (mode 'mirror' is tf.pad's REFLECT), on a
    random picture: a float32 convolution of 0..255 values agrees to far better than a level."""
    import tensorflow as tf
    from scipy.ndimage import gaussian_filter

    from portrait_core.pipeline import PHOTO, _blur

    picture = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    share = 0.03  # of the width: 0.96 px
    radius = int(np.ceil(3 * PHOTO["blur_sigma"][1] * 32))  # the kernel _blur builds
    ours = _blur(tf.constant(picture), tf.constant(share)).numpy()
    sigma = share * 32
    expected = gaussian_filter(
        picture, sigma=(0, sigma, sigma, 0), mode="mirror", truncate=radius / sigma
    )
    assert ours.shape == picture.shape
    np.testing.assert_allclose(ours, expected, atol=0.01)
    assert np.abs(ours - picture).mean() > 5  # it did blur


def test_photo_lower_resolution_reaches_the_robustness_check_x4():
    """The lower-resolution loss draws its factor from PHOTO's range, which must reach the x4
    shrink the robustness evaluation applies; forced to x4 on every batch (no blur, no JPEG),
    a 64 px picture is shrunk to 16 px by averaging and blown up again, bilinear."""
    import tensorflow as tf

    from portrait_core import pipeline
    from portrait_core.robustness import DOWNSCALE

    low, high = pipeline.PHOTO["low_resolution_factor"]
    assert low > 1 and high >= DOWNSCALE
    only_x4 = {"low_resolution_share": 1.0, "blur_share": 0.0, "jpeg_share": 0.0}
    only_x4["low_resolution_factor"] = (DOWNSCALE, DOWNSCALE)
    batch = tf.constant(np.random.default_rng(2).uniform(0, 255, (4, 64, 64, 3)), tf.float32)
    out = pipeline._photo_losses(5, {**pipeline.PHOTO, **only_x4})(batch).numpy()
    small = tf.image.resize(batch, (16, 16), method="area")
    expected = tf.image.resize(small, (64, 64), method="bilinear").numpy()
    assert out.shape == batch.shape
    np.testing.assert_allclose(out, expected, atol=1e-3)
    # the detail is gone: random pixels average out at 16 px (noise sd 74 -> under a third)
    assert out.std(axis=(1, 2)).max() < 0.35 * batch.numpy().std(axis=(1, 2)).min()


@pytest.mark.parametrize("loss", ["low_resolution", "jpeg", "blur"])
def test_photo_losses_are_rolled_picture_by_picture(loss):
    """Each picture rolls its own losses: at a share of one half, a batch of 32 comes out mixed,
    some pictures untouched to the bit and the others degraded, each the way its loss degrades
    it alone (a whole batch degraded together hid from batch normalisation the shift its
    running statistics meet at test time, README "Real faces")."""
    import tensorflow as tf

    from portrait_core import pipeline

    shares = {"low_resolution_share": 0.0, "blur_share": 0.0, "jpeg_share": 0.0}
    shares[f"{loss}_share"] = 0.5
    shares["low_resolution_factor"] = (4.0, 4.0)
    shares["blur_sigma"] = (0.02, 0.02)  # the strongest: a drawn sigma of 0.03 px changes little
    batch = np.random.default_rng(4).uniform(0, 255, (32, 32, 32, 3)).astype(np.float32)
    out = pipeline._photo_losses(11, {**pipeline.PHOTO, **shares})(tf.constant(batch)).numpy()
    assert out.shape == batch.shape and out.dtype == np.float32
    untouched = np.all(out == batch, axis=(1, 2, 3))
    assert 4 <= untouched.sum() <= 28, untouched  # P(outside) < 1e-4 for fair coins
    changed = out[~untouched]
    # degraded pictures lose detail: random pixels are smoothed (all three losses do that)
    assert np.abs(changed - batch[~untouched]).mean(axis=(1, 2, 3)).min() > 5
    if loss == "low_resolution":
        small = tf.image.resize(batch[~untouched], (8, 8), method="area")
        expected = tf.image.resize(small, (32, 32), method="bilinear").numpy()
        np.testing.assert_allclose(changed, expected, atol=1e-3)


def test_a_run_with_the_recipe_trains_and_records_it(synthetic_small, tmp_path):
    from portrait_core.training.train import run_training

    config = make_config(
        str(synthetic_small), "small_resnet", image_size=48, epochs=3, batch_size=16,
        warmup_epochs=1, out=str(tmp_path),
    )  # fmt: skip
    run = run_training(config)
    assert run.status["state"] == "completed", run.status
    described = run.config
    assert described["train"]["optimizer"] == "adamw"
    assert described["preprocessing"]["augmentation"]["kind"] == "photo"
    rates = [h["learning_rate"] for h in run.history]
    assert len(rates) == 3 and rates[0] == pytest.approx(config.lr, rel=1e-3)  # warmed up
    assert rates[2] == pytest.approx(0.0, abs=1e-6)  # the cosine ends at 0
    assert np.isfinite([h["loss"] for h in run.history]).all()


def test_the_recipe_flags_reach_the_run_from_the_command_line(synthetic_small, tmp_path):
    from portrait_core.cli import main
    from portrait_core.training.runs import RunStore

    argv = [
        "train", "--data", str(synthetic_small), "--model", "small_resnet", "--image-size", "40",
        "--epochs", "2", "--max-steps", "1", "--batch-size", "8", "--attributes", "gender,age",
        "--width", "16", "--dropout", "0.1", "--optimizer", "adamw", "--weight-decay", "0.01",
        "--schedule", "cosine", "--warmup-epochs", "1", "--label-smoothing", "0.05",
        "--augmentation", "photo", "--degrade-share", "0.6", "--age-spread", "2.5",
        "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0
    (run,) = RunStore(tmp_path).list()
    train = run.config["train"]
    assert train["options"] == {"width": 16, "dropout": 0.1}
    assert (train["optimizer"], train["weight_decay"], train["schedule"]) == (
        "adamw",
        0.01,
        "cosine",
    )
    assert (train["warmup_epochs"], train["label_smoothing"], train["augmentation"]) == (
        1,
        0.05,
        "photo",
    )
    # the share reached the augmentation the run describes (and trained with)
    assert train["degrade_share"] == 0.6
    augmentation = run.config["preprocessing"]["augmentation"]
    assert augmentation["kind"] == "photo" and augmentation["low_resolution_share"] == 0.6
    assert augmentation["jpeg_share"] == augmentation["blur_share"] == 0.6
    # the age head trained on positions among the bands (the synthetic records give years)
    assert train["age_spread"] == 2.5 and run.state == "completed"
    assert all(np.isfinite(h["age_loss"]) for h in run.history)


def _timed_epochs(budget, seconds, clock):
    """Runs a TimeBudget through epochs of the given lengths; the plan after each."""
    from types import SimpleNamespace

    budget.set_model(SimpleNamespace(stop_training=False))
    budget.on_train_begin()
    plans = []
    for epoch, took in enumerate(seconds):
        clock["now"] += took
        budget.on_epoch_end(epoch)
        plans.append(budget.planned_epochs)
        if budget.model.stop_training:
            break
    return plans


def test_the_time_budget_starts_no_epoch_that_would_end_past_it(monkeypatch):
    from portrait_core.training import callbacks

    clock = {"now": 1000.0}
    monkeypatch.setattr(callbacks.time, "time", lambda: clock["now"])
    budget = callbacks.TimeBudget(minutes=1.0)  # 60 s
    # the first epoch (tracing) is not the guess once a second one is timed: 25 + 15 + 15 = 55,
    # and a fourth (guess 15) would end at 70
    plans = _timed_epochs(budget, (25.0, 15.0, 15.0, 15.0), clock)
    assert budget.stopped_epoch == 3 and budget.model.stop_training
    assert plans == [2, 3, 3]  # 25 + 25 (guess) <= 60, then 40 + 15, then no room
    # a third epoch slower than guessed ends past the budget (68 s): no fourth starts
    budget = callbacks.TimeBudget(minutes=1.0)
    assert _timed_epochs(budget, (25.0, 15.0, 28.0, 15.0), clock) == [2, 3, 3]
    assert budget.stopped_epoch == 3
    # one slow epoch (a busy machine) does not cut the plan short: the guess is the median
    budget = callbacks.TimeBudget(minutes=100 / 60)
    plans = _timed_epochs(budget, (20.0, 10.0, 30.0, 10.0, 10.0, 10.0, 10.0, 10.0), clock)
    assert plans == [5, 9, 5, 7, 7, 7, 7] and budget.stopped_epoch == 7  # ends at 100 s
    with pytest.raises(ValueError, match="max_minutes must be above 0"):
        TrainConfig(data="x", max_minutes=0)
    with pytest.raises(ValueError, match="max_minutes cannot be used with distribute multi"):
        TrainConfig(data="x", max_minutes=5, distribute="multiworker")


def test_the_cosine_ends_at_the_last_epoch_the_budget_fits(monkeypatch, capsys):
    """With a time budget, the schedule's rate reaches 0 at the last epoch that fits, not at
    --epochs: on a machine where only 6 of 40 epochs fit, the sixth ends at rate 0."""
    from portrait_core.training import callbacks
    from portrait_core.training.schedules import WarmupCosine
    from portrait_core.training.train import learning_rate_for

    config = TrainConfig(data="x", epochs=40, lr=0.01, schedule="cosine", warmup_epochs=1)
    steps = 10
    schedule = learning_rate_for(config, steps)
    assert isinstance(schedule, WarmupCosine)
    assert float(schedule(200)) == pytest.approx(0.5 * 0.01 * (1 + np.cos(np.pi * 190 / 390)))
    clock = {"now": 0.0}
    monkeypatch.setattr(callbacks.time, "time", lambda: clock["now"])
    budget = callbacks.TimeBudget(1.0, config.epochs, steps, schedule)  # 60 s, epochs of 10 s
    plans = _timed_epochs(budget, [10.0] * 40, clock)
    assert plans == [6] * 6 and budget.stopped_epoch == 6
    assert capsys.readouterr().out == "time budget: 6 of 40 epochs fit\n"  # said once
    assert float(schedule(6 * steps)) == pytest.approx(0.0, abs=1e-9)
    assert float(schedule(3 * steps)) == pytest.approx(0.5 * 0.01 * (1 + np.cos(np.pi * 0.4)))
    assert float(schedule(steps)) == pytest.approx(0.01)  # the warm-up is the same epoch
    # a run that fits: the plan is --epochs, and the budget does not stop it
    schedule = learning_rate_for(config, steps)
    budget = callbacks.TimeBudget(100.0, config.epochs, steps, schedule)
    assert _timed_epochs(budget, [10.0] * 40, clock)[-1] == 40 and budget.stopped_epoch == 0
    assert float(schedule(40 * steps)) == pytest.approx(0.0, abs=1e-9)
    assert float(schedule(20 * steps)) > 0.004


def test_the_schedule_is_saved_and_loaded_with_the_model(tmp_path):
    import keras

    from portrait_core.models.layers import load_saved_model
    from portrait_core.training.schedules import WarmupCosine

    schedule = WarmupCosine(0.01, 5, 50)
    schedule.set_total_steps(30)  # moved by a budget: saved where it was moved to
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer=keras.optimizers.AdamW(schedule), loss="mse")
    model.save(tmp_path / "m.keras")
    loaded = load_saved_model(tmp_path / "m.keras").optimizer._learning_rate
    assert isinstance(loaded, WarmupCosine)
    assert [float(loaded(s)) for s in (5, 30)] == pytest.approx([0.01, 0.0], abs=1e-9)
    with pytest.raises(ValueError, match="total_steps"):
        WarmupCosine(0.01, 5, 5)


def test_a_run_over_its_time_budget_stops_after_an_epoch_and_says_so(synthetic_small, tmp_path):
    from portrait_core.training.train import run_training

    config = make_config(
        str(synthetic_small), "cnn_custom", image_size=40, epochs=5, batch_size=16,
        max_steps_per_epoch=1, max_minutes=0.0001, attributes=("gender",), out=str(tmp_path),
    )  # fmt: skip
    run = run_training(config)
    assert run.status["state"] == "completed" and len(run.history) == 1
    assert run.metrics["stopped_by_time_budget"] is True


def test_the_cli_trains_the_recipe_by_default():
    """`train` with no --model trains the Train page's default, the recipe for real portraits."""
    from portrait_core.cli import build_parser
    from portrait_core.models.catalog import TRAIN_DEFAULT

    args = build_parser().parse_args(["train"])
    assert args.model == TRAIN_DEFAULT == "small_resnet"
