"""Honest metrics per attribute, from scikit-learn: accuracy, balanced accuracy, macro F1,
per-class precision/recall/F1/support, the confusion matrix, and the majority-class baseline.

The baseline matters: always answering "straight" scores 0.553 on the study's hairstyles, and its
MLP (0.5158) was below it. Every figure here is computed on labelled rows only.

Each head also gets its expected calibration error (15 bins) as the model gives its
probabilities (`ece_before`) and after its temperature (`ece_after`, with `temperature`; both
None for a model without calibration.json): see calibration.py.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from portrait_core.calibration import apply_temperature, expected_calibration_error
from portrait_core.schema import ATTRIBUTES


def attribute_metrics(
    attribute: str,
    y_true: np.ndarray,
    probs: np.ndarray,
    train_codes: np.ndarray,
    temperature: float | None = None,
) -> dict:
    """Metrics of one head. y_true: class indices (-1 = missing); probs: N x n_classes, as the
    model gives them; temperature: the head's calibration, if it has one."""
    classes = ATTRIBUTES[attribute].classes
    labels = list(range(len(classes)))
    keep = y_true >= 0
    y, pred = y_true[keep], np.argmax(probs[keep], axis=1) if keep.any() else np.array([], int)
    train_labelled = train_codes[train_codes >= 0]
    majority = (
        int(np.bincount(train_labelled, minlength=len(classes)).argmax())
        if len(train_labelled)
        else 0
    )
    if len(y) == 0:
        return {"n": 0, "note": "no labelled rows for this attribute in the evaluated split"}
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0
    )
    baseline = np.full_like(y, majority)
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(
            f1_score(y, pred, labels=sorted(set(y)), average="macro", zero_division=0)
        ),
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),  # rows: true class
        "majority_class": classes[majority],
        "majority_baseline": {
            "accuracy": float(accuracy_score(y, baseline)),
            "balanced_accuracy": float(balanced_accuracy_score(y, baseline)),
        },
        "ece_before": expected_calibration_error(probs[keep], y),
        "ece_after": None
        if temperature is None
        else expected_calibration_error(apply_temperature(probs[keep], temperature), y),
        "temperature": temperature,
    }


def head_probabilities(model, dataset) -> tuple[dict[str, np.ndarray], int, float]:
    """({head: N x n_classes}, N, seconds): a model run over a batched dataset (images first)."""
    started = time.perf_counter()
    outputs: dict[str, list[np.ndarray]] = {a: [] for a in model.output_names}
    n = 0
    for batch in dataset:
        images = batch[0] if isinstance(batch, tuple) else batch
        predicted = model(images, training=False)
        for a in outputs:
            outputs[a].append(np.asarray(predicted[a]))
        n += int(images.shape[0])
    seconds = time.perf_counter() - started
    probs = {
        a: np.concatenate(o) if o else np.zeros((0, ATTRIBUTES[a].n_classes), np.float32)
        for a, o in outputs.items()
    }
    return probs, n, seconds


def evaluate_model(
    model,
    dataset,
    codes: dict[str, np.ndarray],
    train_codes: dict[str, np.ndarray],
    temperatures: dict[str, float] | None = None,
) -> dict:
    """Run a model over a batched dataset (images first) and score every head it has.

    temperatures: {head: T} from calibration.json, for the calibrated ECE (none: not calibrated).
    """
    probs, n, seconds = head_probabilities(model, dataset)
    temperatures = temperatures or {}
    per_attribute = {
        a: attribute_metrics(a, codes[a], p, train_codes[a], temperatures.get(a))
        for a, p in probs.items()
    }
    return {
        "attributes": per_attribute,
        "n_images": n,
        "ms_per_image": 1000.0 * seconds / max(n, 1),
        "params": int(model.count_params()),
    }
