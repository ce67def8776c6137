"""`make bench`'s real-faces section: skipped with its reason without ../shared, and, on a tiny
UTKFace-style folder standing in for it, both recipes trained, reported and plotted."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bench import report
from bench import run as bench


def test_without_the_real_faces_the_section_says_why_it_is_skipped(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "REAL_FACES", tmp_path / "absent")
    result = bench.bench_real_faces()
    assert "is absent" in result["skipped"]
    assert len(capsys.readouterr().err.strip().splitlines()) == 1  # one line on the terminal
    text = "\n".join(report.real_faces_markdown(result, {}))
    assert "Skipped:" in text and "is absent" in text


def test_both_recipes_train_side_by_side_and_are_reported(monkeypatch, tmp_path):
    faces = tmp_path / "utkface"
    faces.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        age, gender = int(rng.integers(20, 80)), i % 2
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(faces / f"{age}_{gender}_0_2017010{i:04d}.jpg.chip.jpg")
    monkeypatch.setattr(bench, "REAL_FACES", faces)
    monkeypatch.setattr(bench, "REAL_FACES_SIZE", 32)
    monkeypatch.setattr(bench, "REAL_FACES_MINUTES", 0.001)  # one epoch each
    monkeypatch.setattr(bench, "WORK", tmp_path / "work")
    monkeypatch.setattr(bench, "CURVE_PNG", tmp_path / "curve.png")
    result = bench.bench_real_faces()
    assert set(result["recipes"]) == {"study", "ours"}
    for r in result["recipes"].values():
        assert 0 <= r["gender_accuracy"] <= 1 and 0 <= r["age_balanced_accuracy"] <= 1
        assert r["epochs"] == 1 and r["train_pictures_per_s"] > 0
        assert set(r["robustness_balanced_drop"]) == {
            "downscale_x4", "gaussian_blur", "jpeg_q20", "brightness_-30", "brightness_+30",
        }  # fmt: skip
        assert len(r["curve"]["seconds"]) == 1
    assert (tmp_path / "curve.png").stat().st_size > 1000
    with Image.open(tmp_path / "curve.png") as png:
        assert png.size[0] > 500
    text = "\n".join(report.real_faces_markdown(result, {}))
    assert "| study |" in text and "| ours |" in text and "curve.png" in text
