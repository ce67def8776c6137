"""Faithfulness: does a heat map point at the pixels the model actually used?

Deletion and insertion AUC (Petsiuk, Das & Saenko 2018, "RISE", section 4.1). For a picture, one
head, the class the head predicted and that head's heat map (on the model's square, as
`Explainer.heatmaps` returns it), the pixels are ranked hottest first and then:

- deletion: the top 0, 1/K, 2/K ... all of the pixels are *removed*, i.e. set to the training
  split's mean image, the input that the model's zero-centring layer (models/layers.py) turns
  into zeros, "nothing" as the model sees it. The class probability is followed down; a faithful
  map makes it fall at once, so the area under the curve (fraction removed 0..1, trapezoids) is
  small.
- insertion: the picture starts blurred, as in RISE (a blurred copy keeps the picture's colours
  and layout, so the curve follows the detail the map points at, not the shock of a blank
  picture), and its top pixels are *put back* sharp, hottest first. A faithful map makes the
  probability rise at once: the area is large.

Both AUCs lie in [0, 1]. Lower deletion and higher insertion are better. Every figure has
"random" beside it: maps of smooth random blobs, what a method that knows nothing scores on the
same pictures. `most_faithful` ranks methods by insertion minus deletion, less random's on the
same pictures (the gain over random), averaged over the heads.

Cost: K - 1 new pictures per curve (the two ends, the picture and its two baselines, are shared),
so 2 x (K - 1) x heads x methods pictures per evaluated picture, sent through the model in chunks
of CHUNK. No TensorFlow import here: the model is called on numpy batches, and the pages import
this module for `most_faithful` and `faithfulness_table`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from portrait_core.explain import smooth_map
from portrait_core.images import load_letterboxed
from portrait_core.models.catalog import CAM_METHODS

STEPS = 10  # points along each curve besides the start: a tenth of the pixels per step
# Test pictures per run (evaluate_run, the bench): every method on 24 pictures took 36 s for a
# 64 px small_resnet on 2 cores busy with another training. Against chance on the same pictures
# (the gain over random) methods differ by far more than the noise of 4 heads x 24 curves.
SAMPLE = 24
# At the end of training: a quarter of the test split, at least this many, at most SAMPLE. A tiny
# test run's 24 test pictures give 6 (seconds), a real data set's test split the whole sample.
TRAINING_MIN_SAMPLE = 6
# Score-CAM masks the picture with each of its 64 strongest channels and runs the model on every
# one through tf-keras-vis, eagerly (explain.SCORECAM_MAX_N): 1.3 s a picture at 48 or 64 px
# here, four times all the other methods together. It is measured on the first third of the
# sample only (its "n" says so).
SCORECAM_SHARE = 1 / 3
CHUNK = 256  # pictures per model call: big enough to keep the cores busy, 150 MB at 224 px
INSERTION_BLUR = 1 / 16  # Gaussian sigma of the insertion start, a share of the side: 4 px at 64
RANDOM = "random"
RANDOM_BLOB = 1 / 16  # the random maps' Gaussian sigma, a share of the side: blobs, as CAMs make
DELETION_BASELINE = "the training split's mean image (zero after the model's zero-centring)"
INSERTION_BASELINE = f"the picture blurred (Gaussian, sigma = side x {INSERTION_BLUR:g})"


def auc(probabilities: np.ndarray) -> float:
    """Area under a curve sampled at fractions 0, 1/K, ..., 1 (trapezoids), in [0, 1]."""
    p = np.asarray(probabilities, dtype=np.float64)
    return float(np.trapezoid(p, dx=1.0 / (len(p) - 1)))


def pixel_ranks(heatmap: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """H x W ranks, 0 for the hottest pixel. Equal heat (an empty map is all ties) is ordered by
    `tie_break`, a fixed random field: reading order would delete the top rows first and make
    an empty map look like a map of the forehead."""
    order = np.lexsort((tie_break.ravel(), -np.asarray(heatmap, np.float64).ravel()))
    ranks = np.empty(order.size, np.int64)
    ranks[order] = np.arange(order.size)
    return ranks.reshape(heatmap.shape)


def blurred(square: np.ndarray, sigma: float = INSERTION_BLUR) -> np.ndarray:
    """The insertion start: each channel blurred with sigma = side x `sigma` (float32)."""
    from scipy.ndimage import gaussian_filter

    s = sigma * max(square.shape[:2])
    return gaussian_filter(square.astype(np.float32), (s, s, 0), mode="nearest")


def mean_image(model, image_size: int) -> np.ndarray:
    """The deletion baseline: the mean image the model's zero-centring layer subtracts (mid-grey
    for a model without that layer, the nearest thing to "nothing" in 0..255)."""
    try:
        layer = model.get_layer("zero_centre")
    except ValueError:
        return np.full((image_size, image_size, 3), 127.5, np.float32)
    return np.asarray(layer.mean_image, dtype=np.float32)


def random_map(size: int, rng: np.random.Generator) -> np.ndarray:
    """A chance heat map: smooth random blobs at the scale of a CAM, in [0, 1]."""
    return smooth_map(rng.random((size, size), dtype=np.float32), RANDOM_BLOB)


def _curves(hot: np.ndarray, rest: np.ndarray, ranks: np.ndarray, steps: int) -> np.ndarray:
    """The steps - 1 inner pictures of one curve: pixels ranked below k/steps of the picture
    come from `hot`, the others from `rest` (k = 1 .. steps - 1)."""
    cuts = np.rint(np.arange(1, steps) * ranks.size / steps)
    taken = ranks[None] < cuts[:, None, None]
    return np.where(taken[..., None], hot[None], rest[None])


def faithfulness_scores(
    model,
    explainer,
    squares: np.ndarray,
    classes: dict[str, np.ndarray],
    methods: Sequence[str],
    steps: int = STEPS,
    seed: int = 0,
    limits: dict[str, int] | None = None,
) -> dict[str, dict]:
    """{method: {attribute: {"deletion_auc", "insertion_auc", "n", "gain_over_random"}}}, each
    AUC the mean over the pictures, the gain as `_summary` says (where RANDOM is measured too).

    squares: N x S x S x 3 in 0..255 (letterboxed, as the model takes them); classes: the class
    to follow per head and picture (usually the predicted one), for the heads to measure;
    methods: Explainer methods and/or RANDOM; limits: at most this many pictures (the first)
    for a method. A method that fails (an architecture tf-keras-vis cannot explain) gets
    {"error": message} instead of taking the others down with it. Deterministic for a seed.
    """
    heads = [h for h in model.output_names if h in classes]
    squares = np.asarray(squares, dtype=np.float32)
    size = squares.shape[1]
    baseline = mean_image(model, size)
    limits = limits or {}
    found: dict[str, dict[str, dict[str, list[float]]]] = {
        m: {h: {"deletion_auc": [], "insertion_auc": []} for h in heads} for m in methods
    }
    errors: dict[str, str] = {}
    # every picture's maps of a method in one batched call (Explainer.heatmaps_many)
    maps_of: dict[str, list[dict[str, np.ndarray]]] = {}
    for method in methods:
        if method == RANDOM:
            continue
        n = min(len(squares), limits.get(method, len(squares)))
        chosen = {h: np.asarray(classes[h][:n]) for h in heads}
        try:
            maps_of[method] = explainer.heatmaps_many(squares[:n], chosen, method)
        except Exception as exc:  # noqa: BLE001  (recorded, and the other methods go on)
            errors[method] = f"{type(exc).__name__}: {exc}"
    for i, square in enumerate(squares):
        rng = np.random.default_rng([seed, i])
        tie_break = rng.random((size, size))
        chosen = {h: int(classes[h][i]) for h in heads}
        start = blurred(square)
        # [0, 1, 2]: the picture, the deletion end, the insertion start; then the curves' insides
        pictures = [np.stack([square, baseline, start])]
        plan = []  # (method, head, index of the curve's first inner picture)
        offset = 3
        # Where two methods draw the same map (Grad-CAM and HiResCAM on a head over global
        # average pooling), its curves are made and scored once.
        seen: dict[tuple[str, bytes], int] = {}
        for method in methods:
            if method in errors or i >= limits.get(method, len(squares)):
                continue
            maps = (
                {h: random_map(size, rng) for h in heads}
                if method == RANDOM
                else maps_of[method][i]
            )
            for h in heads:
                key = (h, np.asarray(maps[h], np.float32).tobytes())
                if key in seen:
                    plan.append((method, h, seen[key]))
                    continue
                ranks = pixel_ranks(maps[h], tie_break)
                pictures += [_curves(baseline, square, ranks, steps)]  # deletion
                pictures += [_curves(square, start, ranks, steps)]  # insertion
                plan.append((method, h, offset))
                seen[key] = offset
                offset += 2 * (steps - 1)
        probs = _probabilities(model, np.concatenate(pictures), heads)
        for method, h, first in plan:
            p = probs[h][:, chosen[h]]
            inner = steps - 1
            deletion = [p[0], *p[first : first + inner], p[1]]
            insertion = [p[2], *p[first + inner : first + 2 * inner], p[0]]
            found[method][h]["deletion_auc"].append(auc(np.array(deletion)))
            found[method][h]["insertion_auc"].append(auc(np.array(insertion)))
    chance = found[RANDOM] if RANDOM in found and RANDOM not in errors else {}
    out: dict[str, dict] = {}
    for method in methods:
        if method in errors:
            out[method] = {"error": errors[method]}
            continue
        out[method] = {
            h: _summary(v, chance.get(h) if method != RANDOM else None)
            for h, v in found[method].items()
        }
    return out


def _summary(aucs: dict[str, list[float]], chance: dict[str, list[float]] | None) -> dict:
    """Mean AUCs over the pictures, and the mean gain over the random maps on the same pictures.

    The gain is paired, picture by picture: (insertion - deletion) minus random's. AUCs vary far
    more between pictures (how sure the model was to start with) than between methods, so a
    method measured on fewer pictures (Score-CAM) is compared with chance on those pictures,
    not with the others on different ones."""
    deletion, insertion = np.array(aucs["deletion_auc"]), np.array(aucs["insertion_auc"])
    k = len(deletion)
    entry = {
        "deletion_auc": float(deletion.mean()) if k else None,
        "insertion_auc": float(insertion.mean()) if k else None,
        "n": k,
    }
    if k and chance is not None and len(chance["deletion_auc"]) >= k:
        base = np.array(chance["insertion_auc"][:k]) - np.array(chance["deletion_auc"][:k])
        entry["gain_over_random"] = float(np.mean(insertion - deletion - base))
    return entry


def _probabilities(model, pictures: np.ndarray, heads: list[str]) -> dict[str, np.ndarray]:
    """Each head's softmax outputs for the pictures, CHUNK at a time (one model call each).

    predict_on_batch runs a compiled function: twice the pictures per second of an eager call
    for cnn_custom at 48 px here (860 against 430), and the curves are most of the cost."""
    parts: dict[str, list[np.ndarray]] = {h: [] for h in heads}
    for begin in range(0, len(pictures), CHUNK):
        out = model.predict_on_batch(pictures[begin : begin + CHUNK])
        for h in heads:
            parts[h].append(np.asarray(out[h]))
    return {h: np.concatenate(p) for h, p in parts.items()}


def training_sample(n_test: int) -> int:
    """How many test pictures the end of training measures (TRAINING_MIN_SAMPLE's comment)."""
    return min(SAMPLE, max(TRAINING_MIN_SAMPLE, n_test // 4))


def methods_for(cam_layer: str | None) -> tuple[str, ...]:
    """The methods a model can be explained by (Predictor.explain_methods' rule), then RANDOM."""
    return (*(CAM_METHODS if cam_layer else ("saliency",)), RANDOM)


# Left to `evaluate` at the end of training: Score-CAM costs more than all the other methods
# together (SCORECAM_SHARE's comment), and the end of every training run pays for what it measures.
TRAINING_SKIPS = ("scorecam",)


def training_methods(cam_layer: str | None) -> tuple[str, ...]:
    """What the end of training measures: methods_for without TRAINING_SKIPS."""
    return tuple(m for m in methods_for(cam_layer) if m not in TRAINING_SKIPS)


def evaluate_faithfulness(
    model,
    paths: Sequence,
    image_size: int,
    cam_layer: str | None,
    model_name: str = "this model",
    n: int = SAMPLE,
    steps: int = STEPS,
    seed: int = 0,
    split: str = "test",
    methods: Sequence[str] | None = None,
) -> dict:
    """metrics.json's `faithfulness` section: every method the model supports, and RANDOM, on
    a seeded sample of at most `n` of the pictures in `paths`, each head following its own
    predicted class.

    Besides the AUCs it records the predicted class's mean probability on the picture and on the
    two baselines: where a baseline leaves it high, the curves have little room to move.
    """
    from portrait_core.explain import Explainer

    started = time.perf_counter()
    methods = tuple(methods or methods_for(cam_layer))
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(paths), size=min(n, len(paths)), replace=False).tolist())
    section = {
        "split": split,
        "n_images": len(picked),
        "steps": steps,
        "seed": seed,
        "classes": "each head's predicted class",
        "deletion_baseline": DELETION_BASELINE,
        "insertion_baseline": INSERTION_BASELINE,
    }
    if not picked:
        return {**section, "seconds": 0.0, "methods": {}, "most_faithful": None}
    squares = np.stack([load_letterboxed(paths[i], image_size) for i in picked]).astype(np.float32)
    probs = _probabilities(model, squares, list(model.output_names))
    classes = {h: p.argmax(axis=1) for h, p in probs.items()}
    explainer = Explainer(model, cam_layer, model_name)
    limits = {"scorecam": max(1, round(len(picked) * SCORECAM_SHARE))}
    scores = faithfulness_scores(model, explainer, squares, classes, methods, steps, seed, limits)
    section["start_probability"] = _start_probability(model, squares, classes)
    section["methods"] = scores
    section["most_faithful"] = _best(scores)
    section["seconds"] = round(time.perf_counter() - started, 3)
    return section


def _start_probability(model, squares: np.ndarray, classes: dict[str, np.ndarray]) -> dict:
    """Mean probability of each head's predicted class on the pictures and their baselines."""
    size = squares.shape[1]
    versions = {
        "picture": squares,
        "mean_image": np.broadcast_to(mean_image(model, size), squares.shape),
        "blurred": np.stack([blurred(s) for s in squares]),
    }
    out = {}
    for name, batch in versions.items():
        probs = _probabilities(model, np.ascontiguousarray(batch), list(classes))
        out[name] = {h: float(np.mean(p[np.arange(len(p)), classes[h]])) for h, p in probs.items()}
    return out


# --- reading the section back (no TensorFlow: the pages use these) --------------------------------
def _section(metrics: dict | None) -> dict:
    section = (metrics or {}).get("faithfulness")
    return section if isinstance(section, dict) and isinstance(section.get("methods"), dict) else {}


def faithfulness_measured(metrics: dict | None) -> bool:
    """Whether a run's metrics.json has the faithfulness section (runs trained before it do not)."""
    return bool(_section(metrics).get("methods"))


def _number(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def method_means(entry: dict, attribute: str | None = None) -> tuple[float, float] | None:
    """(deletion AUC, insertion AUC) of one method's entry: one head's, or the mean over the
    heads measured; None where there is nothing to read (an error, no pictures)."""
    if not isinstance(entry, dict) or "error" in entry:
        return None
    heads = [attribute] if attribute else list(entry)
    pairs = []
    for h in heads:
        e = entry.get(h)
        if not isinstance(e, dict) or not e.get("n"):
            continue
        d, i = _number(e.get("deletion_auc")), _number(e.get("insertion_auc"))
        if d is not None and i is not None:
            pairs.append((d, i))
    if not pairs:
        return None
    return float(np.mean([d for d, _ in pairs])), float(np.mean([i for _, i in pairs]))


def method_gain(entry: dict, attribute: str | None = None) -> float | None:
    """A method's gain over random maps (`_summary`): one head's, or the mean over the heads;
    None where any of those heads lacks it."""
    if not isinstance(entry, dict) or "error" in entry:
        return None
    heads = [attribute] if attribute else [h for h in entry if (entry[h] or {}).get("n")]
    gains = [_number((entry.get(h) or {}).get("gain_over_random")) for h in heads]
    return float(np.mean(gains)) if gains and None not in gains else None


def _best(methods: dict) -> str | None:
    """The method with the highest gain over random maps, averaged over the heads; by insertion
    minus deletion where some method has no gain to compare (random not measured)."""
    candidates = {}
    for name, entry in methods.items():
        means = method_means(entry)
        if name != RANDOM and means is not None:
            candidates[name] = (method_gain(entry), means[1] - means[0])
    if not candidates:
        return None
    paired = all(gain is not None for gain, _ in candidates.values())
    scored = {m: gain if paired else plain for m, (gain, plain) in candidates.items()}
    order = {m: k for k, m in enumerate(CAM_METHODS)}  # ties: the catalogue's order
    return max(scored, key=lambda m: (scored[m], -order.get(m, len(order))))


def most_faithful(metrics: dict | None) -> str | None:
    """The method whose maps are most faithful for this model, from its metrics.json: the
    highest insertion minus deletion AUC, as a gain over random maps on the same pictures,
    averaged over the heads (RANDOM never wins). None where faithfulness was not measured: the
    caller keeps its own default."""
    return _best(_section(metrics).get("methods", {}))


def faithfulness_table(
    metrics_by_run: dict[str, dict | None],
    models: dict[str, str] | None = None,
    attribute: str | None = None,
) -> pd.DataFrame:
    """Compare's table: one row per measured run and method, with columns model, run id,
    method, deletion AUC, insertion AUC, insertion − deletion, gain over random (None for random
    itself and where not paired), pictures, most faithful (bool).

    `attribute` picks one head; None averages the heads. Runs without the section are left out
    (the page names them as not measured); so is a method whose evaluation failed.
    """
    rows = []
    for run_id, metrics in metrics_by_run.items():
        section = _section(metrics)
        best = most_faithful(metrics)
        for method, entry in section.get("methods", {}).items():
            means = method_means(entry, attribute)
            if means is None:
                continue
            heads = [attribute] if attribute else list(entry)
            rows.append(
                {
                    "model": (models or {}).get(run_id),
                    "run id": run_id,
                    "method": method,
                    "deletion AUC": means[0],
                    "insertion AUC": means[1],
                    "insertion − deletion": means[1] - means[0],
                    "gain over random": method_gain(entry, attribute),
                    "pictures": max(int(entry.get(h, {}).get("n") or 0) for h in heads),
                    "most faithful": method == best,
                }
            )
    columns = [
        "model",
        "run id",
        "method",
        "deletion AUC",
        "insertion AUC",
        "insertion − deletion",
        "gain over random",
        "pictures",
        "most faithful",
    ]
    return pd.DataFrame(rows, columns=columns)
