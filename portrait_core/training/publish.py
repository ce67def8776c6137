"""Publish a finished run as a model folder (artifacts/default): model, config, metrics, card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from portrait_core.schema import ATTRIBUTES
from portrait_core.training.runs import Run, write_json_atomic

FILES = (
    "model.keras",
    "config.json",
    "metrics.json",
    "mean_image.npy",
    "history.jsonl",
    "calibration.json",  # per-head temperatures: prediction applies them (calibration.py)
)
MAX_BYTES = 20 * 1024 * 1024  # the default model is committed: keep the repository light


SMALL_CLASS = 10  # test pictures under which a class's recall is mostly noise


def model_card(run: Run) -> str:
    config, metrics = run.config, run.metrics or {}
    train = config["train"]
    rows = []
    for attr, m in metrics.get("attributes", {}).items():
        base = m.get("majority_baseline", {})
        rows.append(
            f"| {ATTRIBUTES[attr].title} | {m['accuracy']:.3f} | {m['balanced_accuracy']:.3f} | "
            f"{m['macro_f1']:.3f} | {base.get('accuracy', float('nan')):.3f} | {m['n']} |"
        )
    small = [
        f"{ATTRIBUTES[attr].title} {cls} ({c['support']})"
        for attr, m in metrics.get("attributes", {}).items()
        for cls, c in m.get("per_class", {}).items()
        if 0 < c["support"] < SMALL_CLASS
    ]
    caveat = (
        [
            "",
            "Classes with fewer than 10 test pictures, so that their recall (and the balanced "
            "accuracy with it) rests on a handful of pictures: " + ", ".join(small) + ".",
        ]
        if small
        else []
    )
    data = config["data"]
    return "\n".join(
        [
            "# Model card: Portrait Lab default model",
            "",
            f"- Architecture: `{train['model']}` ({config['model']['params']:,} parameters), one "
            f"multi-output model with heads {', '.join(config['attributes'])}.",
            f"- Input: {train['image_size']} px letterboxed RGB; zero-centred by the training split's "
            "mean image, which is stored inside `model.keras`.",
            f"- Trained on: {data['n_images']:,} synthetic montages ({data['format']} layout) made by "
            f"`python -m portrait_core synth --n {data['n_images']} --seed 0 --size 128` (`make data`); "
            "split "
            f"{data['split_sizes']} (train/val/test), seed {train['seed']}.",
            f"- Training: {metrics.get('epochs_run')} epochs, best epoch {metrics.get('best_epoch')} "
            f"by validation loss, {metrics.get('train_seconds', 0):.0f} s on the CPU that made it.",
            f"- Settings: preset `{train['preset']}`, options {train['options']}, batch "
            f"{train['batch_size']}, learning rate {train['lr']}, augmentation "
            f"{'on' if train['augment'] else 'off'}, class weights "
            f"{'on' if train['class_weights'] else 'off'}.",
            f"- Prediction: {metrics.get('ms_per_image', float('nan')):.1f} ms per image in batches.",
            "",
            "## Test-split metrics (synthetic data)",
            "",
            "| attribute | accuracy | balanced accuracy | macro F1 | majority baseline | n |",
            "|---|---|---|---|---|---|",
            *rows,
            *caveat,
            *_calibration_section(metrics),
            *_robustness_section(metrics),
            "",
            "## What it is not good for",
            "",
            "It has seen only drawn, synthetic montages: front-facing cartoon portraits on plain "
            "backgrounds. Its labels for real photographs mean little; it exists so that prediction, "
            "explanation and the app work on a fresh machine. Train on real labelled portraits (AI Hub, "
            "UTKFace, CelebA or a CSV manifest) for real use. Gender and age bands are coarse labels that "
            "describe appearance, not identity; do not use any model of this kind to make decisions "
            "about people.",
            *(
                []
                if train["augment"]
                else [
                    "",
                    "It was trained without augmentation, at one resolution: blurred or "
                    "low-resolution pictures (small pictures blown up) get markedly worse labels.",
                ]
            ),
            "",
        ]
    )


def _calibration_section(metrics: dict) -> list[str]:
    scored = {a: m for a, m in metrics.get("attributes", {}).items() if m.get("n")}
    if not any(m.get("temperature") for m in scored.values()):
        return []
    rows = [
        f"| {ATTRIBUTES[a].title} | {m['temperature']:.3f} | {m['ece_before']:.3f} | "
        f"{m['ece_after']:.3f} |"
        for a, m in scored.items()
        if m.get("temperature")
    ]
    return [
        "",
        "## Calibration",
        "",
        "Prediction divides each head's log-probabilities by a temperature fitted on the "
        "validation split (`calibration.json`; Guo et al. 2017): labels do not change, confidences "
        "do. Expected calibration error (15 bins, top label) on the test split:",
        "",
        "| attribute | temperature | ECE before | ECE after |",
        "|---|---|---|---|",
        *rows,
    ]


def _robustness_section(metrics: dict) -> list[str]:
    table = metrics.get("robustness", {}).get("degradations", {})
    scored = [a for a, m in metrics.get("attributes", {}).items() if m.get("n")]
    if not table or not scored:
        return []
    rows = []
    for attr in scored:
        clean = metrics["attributes"][attr]["balanced_accuracy"]
        cells = [f"{clean:.3f}"]
        for entry in table.values():
            m = entry["attributes"].get(attr, {})
            cells.append(
                f"{m['balanced_accuracy']:.3f} ({m['balanced_accuracy'] - clean:+.3f})"
                if m.get("n")
                else "-"
            )
        rows.append(f"| {ATTRIBUTES[attr].title} | " + " | ".join(cells) + " |")
    return [
        "",
        "## Robustness",
        "",
        "Balanced accuracy on the test split with each picture degraded at the model's input "
        "size (change from clean in brackets):",
        "",
        "| attribute | clean | " + " | ".join(e["title"] for e in table.values()) + " |",
        "|---|---|" + "---|" * len(table),
        *rows,
    ]


def _save_for_prediction(source: Path, target: Path) -> None:
    """The model without its optimizer: Adam's two slots per weight would triple the file."""
    from portrait_core.models.layers import load_saved_model

    load_saved_model(source, compile=False).save(target)


def complete_description(run: Run) -> dict:
    """The run's config.json, with what runs trained before them lack: the face framing
    (measured now on the training split, where its pictures are still there) and whether the
    data was synthetic."""
    from portrait_core.faces import HEAD_FRAMING, measure_framing
    from portrait_core.training.train import is_synthetic

    config = json.loads(json.dumps(run.config))  # a copy
    data = config.setdefault("data", {})
    root = Path(data.get("path") or config["train"]["data"])
    data.setdefault("synthetic", is_synthetic(root))
    preprocessing = config.setdefault("preprocessing", {})
    if "face_framing" not in preprocessing:
        split = run.path / "split.csv"
        train = []
        if split.is_file():
            rows = pd.read_csv(split)
            train = [root / p for p in rows.loc[rows["split"] == "train", "path"]]
        seed = int(config["train"].get("seed") or 0)
        framing = measure_framing([p for p in train if p.is_file()], seed=seed) or HEAD_FRAMING
        preprocessing["face_framing"] = framing.to_dict()
    return config


def publish(run: Run, dest: str | Path) -> Path:
    """Copy a run's files into `dest` (replacing it whole, atomically enough: temp then rename)."""
    if run.metrics is None or not run.model_file.exists():
        raise ValueError(f"run {run.id} has no model and metrics to publish")
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in FILES:
        if name == "model.keras":
            _save_for_prediction(run.model_file, tmp / name)
        elif name == "config.json":
            write_json_atomic(tmp / name, complete_description(run))
        elif (run.path / name).exists():
            shutil.copy2(run.path / name, tmp / name)
    (tmp / "MODEL_CARD.md").write_text(model_card(run))
    size = sum(p.stat().st_size for p in tmp.iterdir())
    if size > MAX_BYTES:
        shutil.rmtree(tmp)
        raise ValueError(
            f"{run.id} is {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB limit"
        )
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
