"""bench/gpu.py (model arithmetic on any Keras backend) and its section of bench/README.md."""

from __future__ import annotations

import json

from bench import gpu, report


def test_gpu_script_measures_training_and_prediction(tmp_path):
    out = tmp_path / "gpu.json"
    argv = ["--quick", "--archs", "cnn_custom", "--steps", "2", "--epochs", "2", "--out", str(out)]
    assert gpu.main(argv) == 0
    r = json.loads(out.read_text())
    assert r["backend"] == "tensorflow" and r["device"]
    train = r["train"]["cnn_custom@32/b8"]
    assert train["img_s"] > 0 and train["epochs"] == 2 and train["first_epoch_s"] > 0
    assert r["predict"]["cnn_custom@32"]["one_ms"] > 0
    assert r["finished"] >= r["started"]


def test_gpu_section_sets_each_rate_beside_the_cpu_one():
    g = {
        "device": "gpu:Test",
        "train": {
            "cnn_custom@128/b32": {"img_s": 120.0, "first_epoch_s": 2.0},
            "cnn_custom@224/b128": {"img_s": 50.0, "first_epoch_s": 3.0},
        },
        "predict": {"cnn_custom@128": {"one_ms": 2.5, "batch64_img_s": 1000.0}},
    }
    cpu = {"cnn_custom@128": {"epoch_img_s": 10.0}, "cnn_custom@224": {"epoch_img_s": 2.0}}
    text = "\n".join(report.gpu_markdown(g, cpu))
    assert "| cnn_custom | 128 px / 32 | 120.0 | 2.0 | 10.0 | 12x |" in text
    # the CPU suite never ran batch 128: no ratio is made up for it
    assert "| cnn_custom | 224 px / 128 | 50.0 | 3.0 | n/a | n/a |" in text
    assert "| cnn_custom@128 | 2.50 | 1,000 |" in text
    assert "gpu:Test" in report.markdown({}, g)


def test_merge_adds_a_model_and_cpu_reference_fills_the_cpu_column(tmp_path, capsys):
    """--merge keeps the figures already in the file and records the run that added some;
    --cpu-reference measures the same on this machine, and the report takes it as the CPU
    column for that setting; a malformed --plan is one line on stderr and exit status 2."""
    out = tmp_path / "gpu.json"
    first = ["--quick", "--archs", "cnn_custom", "--steps", "1", "--epochs", "1", "--out", str(out)]
    assert gpu.main(first) == 0
    merge = ["--archs", "mlp_custom", "--plan", "40x4", "--predict-size", "40", "--steps", "1"]
    assert gpu.main([*merge, "--epochs", "1", "--merge", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["train"]) == {"cnn_custom@32/b8", "mlp_custom@40/b4"}
    assert set(r["predict"]) == {"cnn_custom@32", "mlp_custom@40"}
    (added,) = r["added"]
    assert added["archs"] == "mlp_custom" and added["finished"] >= added["started"]

    reference = ["--archs", "mlp_custom", "--plan", "40x4", "--steps", "1", "--epochs", "1"]
    assert gpu.main([*reference, "--cpu-reference", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    cpu_rate = r["cpu_train"]["mlp_custom@40/b4"]["img_s"]
    assert cpu_rate > 0 and set(r["train"]) == {"cnn_custom@32/b8", "mlp_custom@40/b4"}
    text = "\n".join(report.gpu_markdown(r, {}))
    gpu_rate = r["train"]["mlp_custom@40/b4"]["img_s"]
    row = next(line for line in text.splitlines() if line.startswith("| mlp_custom | 40 px / 4 |"))
    assert f"| {report._f(cpu_rate)} | {report._f(gpu_rate / cpu_rate, 0)}x |" in row
    assert "| cnn_custom | 32 px / 8 |" in text and "n/a | n/a |" in text
    assert "Added " in text and "mlp_custom (`bench/gpu.py --merge`)" in text

    capsys.readouterr()
    assert gpu.main(["--plan", "64by32", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--plan must read like 64x32" in err[0]
