"""The robustness degradations (deterministic, shape and dtype kept, each really changing the
picture the way its name says) and the robustness table of a trained run and of `evaluate`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from portrait_core.robustness import DEGRADATIONS, degrade, degraded_squares


def picture(h: int = 53, w: int = 71, seed: int = 0) -> np.ndarray:
    """Mid-tone detail (values 40..180, so brightness +/-30 % never clips): a smooth gradient
    plus fine noise, at an odd size."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 160, w)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(ramp + rng.normal(0, 20, (h, w, 3)), 40, 180).astype(np.uint8)


def high_frequency_energy(image: np.ndarray) -> float:
    x = image.astype(np.float64)
    return float(np.mean(np.diff(x, axis=0) ** 2) + np.mean(np.diff(x, axis=1) ** 2))


@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_a_degradation_is_deterministic_keeps_shape_and_dtype_and_changes_the_picture(name):
    original = picture()
    before = original.copy()
    first, second = degrade(name, original), degrade(name, picture())
    assert first.shape == original.shape and first.dtype == np.uint8
    assert first.tobytes() == second.tobytes()  # the same bytes every time
    assert np.array_equal(original, before)  # the input is left alone
    assert np.abs(first.astype(int) - original).mean() > 2.0


@pytest.mark.parametrize("name", ["downscale_x4", "gaussian_blur", "jpeg_q20"])
def test_detail_is_lost(name):
    original = picture(96, 128)
    assert high_frequency_energy(degrade(name, original)) < 0.5 * high_frequency_energy(original)


def test_the_blur_scales_with_the_picture():
    """sigma is 1/64 of the longer side: a picture twice the size, blurred, shrunk back, looks
    like the smaller one blurred."""
    small = picture(64, 64)
    big = np.asarray(Image.fromarray(small).resize((128, 128), Image.Resampling.NEAREST))
    blurred_big = Image.fromarray(degrade("gaussian_blur", big)).resize(
        (64, 64), Image.Resampling.BOX
    )
    blurred_small = degrade("gaussian_blur", small).astype(int)
    assert np.abs(np.asarray(blurred_big, int) - blurred_small).mean() < 2.0


@pytest.mark.parametrize("name, factor", [("brightness_-30", 0.7), ("brightness_+30", 1.3)])
def test_brightness_changes_the_mean_by_30_percent(name, factor):
    original = picture()
    assert degrade(name, original).mean() / original.mean() == pytest.approx(factor, abs=0.005)


def test_wrong_input_is_refused():
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade("sepia", picture())
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        degrade("jpeg_q20", picture().astype(np.float32))
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        degrade("jpeg_q20", picture()[..., 0])


def test_the_letterbox_padding_stays_black(tmp_path):
    """Degradations apply to the photo inside its letterbox, not to the padding around it."""
    path = tmp_path / "wide.png"
    Image.fromarray(np.full((30, 90, 3), 200, np.uint8)).save(path)
    versions = degraded_squares(path, 48)  # the photo fills rows 16..31 of the 48 px square
    assert set(versions) == set(DEGRADATIONS)
    for name, square in versions.items():
        assert square.shape == (48, 48, 3) and square.dtype == np.uint8, name
        assert not square[:16].any() and not square[32:].any(), name
        assert square[16:32].min() > 100, name
    assert versions["brightness_-30"][16:32].mean() == pytest.approx(140, abs=1)
    again = degraded_squares(path, 48)
    assert all(again[n].tobytes() == versions[n].tobytes() for n in DEGRADATIONS)


def check_table(metrics: dict) -> None:
    table = metrics["robustness"]
    assert set(table["degradations"]) == set(DEGRADATIONS)
    assert table["n_images"] > 0 and table["seconds"] > 0
    for name, entry in table["degradations"].items():
        assert entry["title"] == DEGRADATIONS[name].title
        assert set(entry["attributes"]) == set(metrics["attributes"])
        for attr, m in entry["attributes"].items():
            clean = metrics["attributes"][attr]
            assert m["n"] == clean["n"] > 0
            assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["balanced_accuracy"] <= 1.0
            assert m["accuracy_drop"] == pytest.approx(clean["accuracy"] - m["accuracy"])
            assert m["balanced_accuracy_drop"] == pytest.approx(
                clean["balanced_accuracy"] - m["balanced_accuracy"]
            )


def test_a_trained_run_records_the_robustness_table(trained_run):
    metrics = trained_run.metrics
    assert metrics["robustness"]["split"] == "test"
    assert metrics["robustness"]["n_images"] == trained_run.config["data"]["split_sizes"]["test"]
    check_table(metrics)


def test_evaluate_repeats_the_runs_table_and_its_calibration(trained_run, tmp_path):
    import shutil

    from portrait_core.training.train import evaluate_run

    # on a copy: evaluate rewrites the run's metrics.json, which the session's other files
    # (test_faithfulness.py) read as training left it, in whatever order xdist runs them
    shutil.copytree(trained_run.path, tmp_path / trained_run.id)
    again = evaluate_run(trained_run.id, runs=tmp_path)
    check_table(again)
    recorded = trained_run.metrics
    for name, entry in again["robustness"]["degradations"].items():
        for attr, m in entry["attributes"].items():
            was = recorded["robustness"]["degradations"][name]["attributes"][attr]
            assert m["accuracy"] == pytest.approx(was["accuracy"])
    for attr, m in again["attributes"].items():
        was = recorded["attributes"][attr]
        assert m["temperature"] == was["temperature"]
        assert m["ece_before"] == pytest.approx(was["ece_before"], abs=1e-6)
        assert m["ece_after"] == pytest.approx(was["ece_after"], abs=1e-6)


def test_the_model_card_shows_the_robustness_table(trained_run):
    from portrait_core.training.publish import model_card

    card = model_card(trained_run)
    assert "## Robustness" in card
    assert all(d.title in card for d in DEGRADATIONS.values())


def test_evaluate_brings_an_older_runs_metrics_up_to_date(trained_run, tmp_path):
    """A run trained before calibration and robustness came in gets both from `evaluate`; what
    training recorded (its time, best epoch) stays; another data set's scores are not written."""
    import json
    import shutil

    from portrait_core.cli import main

    runs = tmp_path / "runs"
    shutil.copytree(trained_run.path, runs / trained_run.id)
    metrics_file = runs / trained_run.id / "metrics.json"
    older = json.loads(metrics_file.read_text())
    del older["robustness"]
    for m in older["attributes"].values():
        for key in ("ece_before", "ece_after", "temperature"):
            del m[key]
    metrics_file.write_text(json.dumps(older))

    assert main(["evaluate", trained_run.id, "--out", str(runs)]) == 0
    updated = json.loads(metrics_file.read_text())
    check_table(updated)
    assert all("ece_after" in m for m in updated["attributes"].values())
    assert updated["train_seconds"] == older["train_seconds"]
    assert updated["best_epoch"] == older["best_epoch"]

    other = tmp_path / "other"
    shutil.copytree(trained_run.config["train"]["data"], other)
    before = metrics_file.read_bytes()
    assert main(["evaluate", trained_run.id, "--out", str(runs), "--data", str(other)]) == 0
    assert metrics_file.read_bytes() == before
