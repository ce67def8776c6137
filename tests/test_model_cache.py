"""Predict's model cache and the warm-up app.py starts: models loaded once, in the background."""

from __future__ import annotations

import logging

import pytest

import portrait_core
from pages import model_cache
from portrait_core import leaderboard


class FakePredictor:
    explain_methods = ["gradcam", "saliency"]

    def __init__(self, path, calls):
        self.path, self.calls = path, calls

    def predict(self, image):
        self.calls.append(("predict", self.path, image.size))
        return {"gender": {"label": "female", "probs": {"male": 0.2, "female": 0.8}}}

    def explain(self, image, method, classes=None):
        self.calls.append(("explain", self.path, method, classes))
        return {}


@pytest.fixture
def fake_loader(monkeypatch):
    calls = []

    def load(path):
        calls.append(("load", path))
        if "broken" in path:
            raise ValueError("not a model")
        return FakePredictor(path, calls)

    monkeypatch.setattr(portrait_core, "load_predictor", load)
    model_cache.predictor_for.clear()
    model_cache.warm_up.clear()
    yield calls
    model_cache.predictor_for.clear()
    model_cache.warm_up.clear()


@pytest.fixture
def default_model(monkeypatch, tmp_path):
    folder = tmp_path / "default"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"x")
    (folder / "config.json").write_text('{"attributes": ["gender", "age", "face_shape"]}')
    monkeypatch.setattr(leaderboard, "DEFAULT_MODEL", folder)
    monkeypatch.setattr(leaderboard, "RUNS", tmp_path / "no-runs")
    return folder


def test_warm_up_loads_each_model_once_and_runs_it(fake_loader, default_model, monkeypatch):
    monkeypatch.setenv("PORTRAIT_LAB_WARM_UP", "1")
    assert model_cache.opening_models() == [str(default_model)]
    thread = model_cache.warm_up()
    assert thread is not None and model_cache.warm_up() is thread  # once per server
    thread.join(30)
    path = str(default_model)
    assert fake_loader == [
        ("load", path),
        ("predict", path, (96, 128)),
        ("explain", path, "gradcam", {"gender": "female"}),
    ]
    # Predict's own call now finds the loaded model in the cache: no second load.
    predictor = model_cache.predictor_for(path, model_cache.model_version(path))
    assert predictor.path == path and [c[0] for c in fake_loader].count("load") == 1


def test_warm_up_can_be_turned_off(fake_loader, default_model, monkeypatch):
    monkeypatch.setenv("PORTRAIT_LAB_WARM_UP", "0")
    assert model_cache.warm_up() is None
    assert fake_loader == []


def test_a_model_that_fails_to_load_only_logs(fake_loader, tmp_path, caplog):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger=model_cache.__name__):
        model_cache._warm([str(broken)])
    assert fake_loader == [("load", str(broken))]
    assert "warm-up of" in caplog.text and "not a model" in caplog.text


def test_a_model_calibrated_after_it_was_opened_is_loaded_again(tmp_path):
    """A run still training is opened on Predict; when it ends, calibration.json appears beside
    an unchanged model.keras: the cache key changes, so Predict shows calibrated probabilities."""
    import os
    import time

    from pages import model_cache

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"weights")
    os.utime(folder / "model.keras", (time.time() - 60, time.time() - 60))
    before = model_cache.model_version(folder)
    (folder / "calibration.json").write_text('{"method": "temperature", "temperatures": {}}')
    assert model_cache.model_version(folder) > before
