"""Calibrated probabilities: one temperature per head (Guo et al. 2017), and the calibration error.

A head's softmax says how sure it is; temperature scaling makes "90 %" mean right 9 times in 10.
After training, one number T per head is fitted on the validation split (the T that minimises
the negative log-likelihood of softmax(log(p) / T) over the labelled pictures) and stored with
the model in calibration.json:

    {"method": "temperature", "formula": "softmax(log(p) / T)", "fitted_on": "val",
     "temperatures": {head: T}, "n": {head: labelled validation pictures}}

log(p) is the head's logits less a constant per picture, so softmax(log(p) / T) is
softmax(logits / T): the argmax, hence the label, never changes, and the probabilities still sum
to 1. The temperature lives in this file, not as a layer in model.keras, because the explainers
replace each head's softmax with a linear activation and expect nothing after it.

Plain numpy and SciPy: the prediction path and the pages may read it without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CALIBRATION_FILE = "calibration.json"
ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017 and Naeini et al. 2015
# T is searched in log space between these: 0.25 sharpens logits 4-fold, 20 flattens them
# 20-fold, beyond what Guo et al. report (about 1 to 3 for over-confident networks; under 1 for
# under-confident ones, e.g. trained with label smoothing). A head right on every validation
# picture has its optimum at T -> 0 (its NLL keeps falling as it sharpens): on a 24-picture
# validation split that drove T to 0.05 and made the test split's ECE worse. The bound stops it.
T_MIN, T_MAX = 0.25, 20.0
# Fewer labelled validation pictures than this leave a head uncalibrated: one T fitted on a
# handful of pictures says more about them than about the model.
MIN_PICTURES = 20
# float32 softmax outputs underflow to 0 below this; log(0) would make every logit -inf.
P_FLOOR = float(np.finfo(np.float32).tiny)


def _logs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, np.float64), P_FLOOR, None))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T) row by row (N x K or K): same argmax, rows summing to 1.

    float64, so that two probabilities a float32 ulp apart stay apart once T divides them.
    """
    z = _logs(probs) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean -log softmax(log(p) / T)[label] over the rows (labels: class indices, none missing)."""
    z = _logs(probs) / float(temperature)
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in [T_MIN, T_MAX] minimising the NLL of softmax(log(p) / T) on labelled rows.

    labels: class indices, -1 where missing (left out). The NLL is convex in 1/T, so a bounded
    scalar search over log T finds the one minimum. Raises ValueError with no labelled row.
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels)
    keep = labels >= 0
    if not keep.any():
        raise ValueError("no labelled rows to fit a temperature on")
    p, y = np.asarray(probs)[keep], labels[keep]
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(p, y, np.exp(log_t)),
        bounds=(np.log(T_MIN), np.log(T_MAX)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(found.x))


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS
) -> float | None:
    """Top-label ECE (Naeini et al. 2015; Guo et al. 2017): pictures binned by their highest
    probability into n_bins equal-width bins (lo, hi]; the mean over pictures of
    |accuracy - mean confidence| of their bin. None when no row is labelled (-1 = missing).

    Computed by MAPIE (scikit-learn-contrib; no PyTorch, unlike netcal and torchmetrics).
    """
    from mapie.metrics.calibration import expected_calibration_error as mapie_ece

    labels = np.asarray(labels)
    keep = labels >= 0
    if not keep.any():
        return None
    p = np.asarray(probs, np.float64)[keep]
    confidence = np.clip(p.max(axis=1), 0.0, 1.0)  # float32 sums may top 1 by an ulp
    correct = (p.argmax(axis=1) == labels[keep]).astype(int)
    # MAPIE's uniform edges are linspace(0, 1, num_bins): num_bins edges make num_bins - 1 bins
    # of width 1 / (num_bins - 1) (plus one for a confidence of exactly 0), so 16 gives Guo's 15.
    return float(mapie_ece(correct, confidence, num_bins=n_bins + 1, split_strategy="uniform"))


def fit_calibration(probs: dict[str, np.ndarray], codes: dict[str, np.ndarray]) -> dict:
    """calibration.json's content from validation outputs: {head: N x K} and {head: labels}.

    A head with fewer than MIN_PICTURES labelled validation pictures gets no temperature (it
    stays uncalibrated, and `n` says why).
    """
    n = {head: int((np.asarray(codes[head]) >= 0).sum()) for head in probs}
    return {
        "method": "temperature",
        "formula": "softmax(log(p) / T)",
        "fitted_on": "val",
        "temperatures": {
            head: round(fit_temperature(p, codes[head]), 6)
            for head, p in probs.items()
            if n[head] >= MIN_PICTURES
        },
        "n": n,
        "min_pictures": MIN_PICTURES,
    }


def read_temperatures(folder: str | Path) -> dict[str, float]:
    """{head: T} from a model or run folder's calibration.json; {} where there is none (an
    older run, a folder published before calibration) or where it is unusable."""
    import json

    try:
        stored = json.loads((Path(folder) / CALIBRATION_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict) or stored.get("method") != "temperature":
        return {}
    temperatures = stored.get("temperatures")
    if not isinstance(temperatures, dict):
        return {}
    return {
        str(head): float(t)
        for head, t in temperatures.items()
        if isinstance(t, (int, float)) and not isinstance(t, bool) and np.isfinite(t) and t > 0
    }
