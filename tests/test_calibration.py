"""Temperature scaling and the expected calibration error: by hand, on a model whose true
probabilities are known, and through a trained run, its prediction and its published folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from portrait_core.calibration import (
    CALIBRATION_FILE,
    MIN_PICTURES,
    T_MAX,
    T_MIN,
    apply_temperature,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    negative_log_likelihood,
    read_temperatures,
)
from portrait_core.schema import ATTRIBUTES


def test_ece_matches_a_hand_computed_case():
    probs = np.array(
        [
            [0.90, 0.05, 0.05],  # right  } bin (13/15, 14/15]: accuracy 1/2, confidence 0.9
            [0.90, 0.05, 0.05],  # wrong  }
            [0.41, 0.30, 0.29],  # right: bin (6/15, 7/15]
            [0.39, 0.31, 0.30],  # wrong: bin (5/15, 6/15]
            [1.00, 0.00, 0.00],  # right: bin (14/15, 1], no gap
            [0.50, 0.50, 0.00],  # label missing: left out
        ]
    )
    labels = np.array([0, 1, 0, 1, 0, -1])
    expected = (2 * abs(0.5 - 0.9) + abs(1 - 0.41) + abs(0 - 0.39)) / 5
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)
    # 0.39 and 0.41 share a bin only when the bins are wider than 1/15 (14 bins: 0.2)
    assert expected_calibration_error(probs, labels, n_bins=14) == pytest.approx(
        (2 * 0.4 + 2 * abs(0.5 - 0.4)) / 5
    )
    assert expected_calibration_error(probs, np.full(6, -1)) is None


def test_ece_is_zero_where_confidence_equals_accuracy():
    probs = np.tile([0.25, 0.75], (8, 1)).astype(np.float32)
    labels = np.array([1, 1, 1, 0, 1, 1, 1, 0])  # right 6 times in 8 at 75 % confidence
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-6)


def overconfident(rng, n: int, k: int = 4, factor: float = 5.0):
    """Labels drawn from softmax(z) (the truly calibrated model), and a model saying
    softmax(factor * z): overconfident, with the very temperature `factor` as its cure."""
    z = rng.normal(0.0, 1.5, (n, k))
    true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = (rng.random((n, 1)) > np.cumsum(true, axis=1)).sum(axis=1)
    sharp = np.exp(factor * z)
    return (sharp / sharp.sum(axis=1, keepdims=True)).astype(np.float32), labels


def test_temperature_scaling_cures_an_overconfident_model():
    rng = np.random.default_rng(0)
    val_probs, val_labels = overconfident(rng, 3000)
    test_probs, test_labels = overconfident(rng, 3000)
    val_labels[::10] = -1  # missing labels are left out of the fit
    t = fit_temperature(val_probs, val_labels)
    assert 4.0 < t < 6.5  # the true cure is 5
    before = expected_calibration_error(test_probs, test_labels)
    after = expected_calibration_error(apply_temperature(test_probs, t), test_labels)
    assert before > 0.15 and after < before / 3
    assert negative_log_likelihood(test_probs, test_labels, t) < negative_log_likelihood(
        test_probs, test_labels, 1.0
    )


def test_an_underconfident_model_is_sharpened():
    rng = np.random.default_rng(1)
    probs, labels = overconfident(rng, 3000, factor=0.4)
    assert 0.3 < fit_temperature(probs, labels) < 0.55  # the cure is 0.4


def test_temperature_keeps_every_label_and_sums_to_one():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.full(5, 0.3), size=500).astype(np.float32)
    probs[0] = [1, 0, 0, 0, 0]  # float32 softmax underflow: zeros must not break the logs
    for t in (T_MIN, 0.3, 1.0, 2.5, T_MAX):
        scaled = apply_temperature(probs, t)
        assert np.array_equal(scaled.argmax(axis=1), probs.argmax(axis=1))
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0, atol=1e-9)
        assert np.isfinite(scaled).all()
    np.testing.assert_allclose(apply_temperature(probs[1:], 1.0), probs[1:], atol=1e-6)


def test_a_head_with_too_few_validation_labels_stays_uncalibrated():
    rng = np.random.default_rng(4)
    n = MIN_PICTURES + 5
    probs = rng.dirichlet(np.ones(2), size=n).astype(np.float32)
    few = np.full(n, -1)
    few[: MIN_PICTURES - 1] = rng.integers(0, 2, MIN_PICTURES - 1)
    record = fit_calibration(
        {"gender": probs, "hairstyle": np.full((n, 5), 0.2, np.float32), "age": probs},
        {"gender": rng.integers(0, 2, n), "hairstyle": np.full(n, -1), "age": few},
    )
    assert record["method"] == "temperature" and record["fitted_on"] == "val"
    assert set(record["temperatures"]) == {"gender"}
    assert record["n"] == {"gender": n, "hairstyle": 0, "age": MIN_PICTURES - 1}
    with pytest.raises(ValueError, match="no labelled rows"):
        fit_temperature(probs, np.full(4, -1))


@pytest.mark.parametrize(
    "content",
    ["", "not json", "[1, 2]", '{"method": "platt", "temperatures": {"gender": 2.0}}'],
)
def test_an_unusable_calibration_file_reads_as_none(tmp_path, content):
    (tmp_path / CALIBRATION_FILE).write_text(content)
    assert read_temperatures(tmp_path) == {}
    assert read_temperatures(tmp_path / "no-such-folder") == {}


def test_a_trained_run_is_calibrated_on_its_validation_split(trained_run):
    stored = json.loads((trained_run.path / CALIBRATION_FILE).read_text())
    heads = {"gender", "age", "face_shape", "hairstyle"}
    assert stored["method"] == "temperature" and stored["fitted_on"] == "val"
    assert set(stored["temperatures"]) == heads and set(stored["n"]) == heads
    assert all(T_MIN <= t <= T_MAX for t in stored["temperatures"].values())
    assert all(
        0 < n <= trained_run.config["data"]["split_sizes"]["val"] for n in stored["n"].values()
    )
    for attr, m in trained_run.metrics["attributes"].items():
        assert m["temperature"] == stored["temperatures"][attr]
        assert 0.0 <= m["ece_before"] <= 1.0 and 0.0 <= m["ece_after"] <= 1.0


@pytest.fixture(scope="module")
def calibrated_predictor(trained_run):
    from portrait_core.predict import Predictor

    return Predictor(trained_run.path)


def test_prediction_is_calibrated_and_keeps_the_labels(
    calibrated_predictor, trained_run, synthetic_small, tmp_path
):
    from portrait_core.predict import Predictor

    p = calibrated_predictor
    assert p.temperatures == read_temperatures(trained_run.path) and p.temperatures
    plain_folder = tmp_path / "plain"  # the same run without calibration.json: an older run
    shutil.copytree(trained_run.path, plain_folder, ignore=shutil.ignore_patterns("tensorboard"))
    (plain_folder / CALIBRATION_FILE).unlink()
    plain = Predictor(plain_folder)
    assert plain.temperatures == {}
    for picture in sorted(synthetic_small.glob("*.png"))[:6]:
        calibrated, raw = p.predict(picture), plain.predict(picture)
        for attr, r in calibrated.items():
            assert r["calibrated"] is True and raw[attr]["calibrated"] is False
            assert r["label"] == raw[attr]["label"]
            assert list(r["probs"]) == list(ATTRIBUTES[attr].classes)
            assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-6)
            expected = apply_temperature(
                np.array(list(raw[attr]["probs"].values())), p.temperatures[attr]
            )
            np.testing.assert_allclose(list(r["probs"].values()), expected, atol=1e-5)


def test_publish_carries_the_temperatures_and_says_so(trained_run, tmp_path):
    from portrait_core.predict import Predictor
    from portrait_core.training.publish import publish

    dest = publish(trained_run, tmp_path / "model")
    assert read_temperatures(dest) == read_temperatures(trained_run.path)
    assert Predictor(dest).temperatures == read_temperatures(trained_run.path)
    card = (dest / "MODEL_CARD.md").read_text()
    assert "## Calibration" in card and "ECE before" in card
    gender = trained_run.metrics["attributes"]["gender"]
    assert f"{gender['temperature']:.3f} | {gender['ece_before']:.3f}" in card
