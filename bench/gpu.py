"""Model arithmetic on an accelerator: training images/s and forward latency per architecture.

    KERAS_BACKEND=jax python bench/gpu.py --out bench/results_gpu.json
    KERAS_BACKEND=jax python bench/gpu.py --archs small_resnet --plan 64x32,64x256 \
        --predict-size 64 --merge                     # add a model to the file's figures
    python bench/gpu.py --archs small_resnet --plan 64x32 --predict-size 64 --cpu-reference
                                                      # the same measure on this CPU, beside it

The full suite (`bench/run.py`) needs TensorFlow: its input pipeline is tf.data, the Predictor
and Grad-CAM are tf.functions and tf-keras-vis is TensorFlow-only. Where TensorFlow cannot be
installed (the lent GPU machines here reach no package registry, and TensorFlow's GPU wheels with
their CUDA libraries are gigabytes), this script still measures what a GPU changes most: the
models themselves. It builds the same registered models (`create_model`, pure Keras 3) with the
same losses and optimizer as `portrait_core.training`, on whatever backend Keras runs on, and
feeds them random pictures held in memory, so the figures compare with section 3 of
bench/README.md (training from tensors in memory) but not with the pipeline or app sections.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import keras  # noqa: E402

from portrait_core.models import create_model  # noqa: E402
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES  # noqa: E402
from portrait_core.training.metrics import losses_and_metrics  # noqa: E402

ARCHS = ("cnn_custom", "mlp_custom", "alexnet", "resnet50")
# (image size, batch): the CPU suite's two settings, and a batch a GPU can fill.
TRAIN_PLAN = ((128, 32), (224, 16), (224, 128))


def device_name() -> str:
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return ", ".join(f"{d.platform}:{d.device_kind}" for d in jax.devices())
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return ", ".join(g.name for g in gpus) or "cpu"
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception as exc:  # a benchmark names what it ran on, or says why it cannot
        return f"unknown ({exc})"
    return platform.processor() or "unknown"


def random_set(n: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8).astype("float32")
    y = {a: rng.integers(0, ATTRIBUTES[a].n_classes, n).astype("int32") for a in ATTRIBUTE_KEYS}
    return x, y


def build(name: str, size: int):
    options = {"weights": "none"} if name == "resnet50" else {}
    model = create_model(name, image_size=size, attributes=ATTRIBUTE_KEYS, **options)
    losses, metrics = losses_and_metrics(ATTRIBUTE_KEYS)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses, metrics=metrics)
    return model


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def train_rate(name: str, size: int, batch: int, steps: int, epochs: int) -> dict:
    """images/s of whole epochs from memory in one fit; the first epoch (compiling) left out."""
    model = build(name, size)
    x, y = random_set(steps * batch, size)
    timer = EpochTimer()
    model.fit(
        x, y, batch_size=batch, epochs=1 + epochs, verbose=0, shuffle=False, callbacks=[timer]
    )
    rates = [len(x) / s for s in timer.seconds[1:]]
    return {
        "img_s": statistics.median(rates),
        "first_epoch_s": timer.seconds[0],
        "epochs": epochs,
        "steps": steps,
    }


def predict_latency(name: str, size: int, repeats: int = 50) -> dict:
    """One picture through the compiled forward pass (all four heads), ms, median of repeats."""
    model = build(name, size)
    x, _ = random_set(64, size)
    one = x[:1]
    for _ in range(5):
        model.predict_on_batch(one)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = model.predict_on_batch(one)
        np.asarray(out[ATTRIBUTE_KEYS[0]])  # wait for the device
        times.append((time.perf_counter() - start) * 1000)
    model.predict_on_batch(x)
    start = time.perf_counter()
    for _ in range(5):
        np.asarray(model.predict_on_batch(x)[ATTRIBUTE_KEYS[0]])
    batch_ms = (time.perf_counter() - start) * 1000 / 5
    return {"one_ms": statistics.median(times), "batch64_img_s": 64 / (batch_ms / 1000)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=PROJECT / "bench" / "results_gpu.json")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--steps", type=int, default=20, help="steps per timed epoch")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per setting")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    ap.add_argument("--plan", help="SIZExBATCH,... to train at (default: the CPU suite's two)")
    ap.add_argument("--predict-size", type=int, default=128)
    ap.add_argument(
        "--merge", action="store_true", help="add to the figures already in --out, not replace"
    )
    ap.add_argument(
        "--cpu-reference",
        action="store_true",
        help="measure here, as the CPU column beside the GPU figures in --out (cpu_train)",
    )
    args = ap.parse_args(argv)
    plan = ((32, 8),) if args.quick else TRAIN_PLAN
    if args.plan:
        try:
            plan = tuple(tuple(int(v) for v in item.split("x")) for item in args.plan.split(","))
        except ValueError:
            print(f"--plan must read like 64x32,64x256, not {args.plan!r}", file=sys.stderr)
            return 2
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.cpu_reference:
        return cpu_reference(args, plan, earlier)
    this_run = {
        "archs": args.archs,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "device": device_name(),
        "cpu_count": os.cpu_count(),
        "started": time.strftime("%Y-%m-%d %H:%M"),
    }
    if args.merge and earlier:
        results = earlier
        results.setdefault("added", []).append(this_run)
    else:
        results = this_run
        results.update(train={}, predict={})

    def save():
        _save(args.out, results)

    print("backend", results["backend"], "device", results["device"], flush=True)
    for name in args.archs.split(","):
        for size, batch in plan:
            start = time.perf_counter()
            r = train_rate(name, size, batch, args.steps, args.epochs)
            r["seconds_with_compile"] = time.perf_counter() - start
            results["train"][f"{name}@{size}/b{batch}"] = r
            print("train", name, size, batch, f"{r['img_s']:.1f} img/s", flush=True)
            save()
        size = 32 if args.quick else args.predict_size
        r = predict_latency(name, size)
        results["predict"][f"{name}@{size}"] = r
        print("predict", name, size, f"{r['one_ms']:.2f} ms", flush=True)
        save()
    this_run["finished"] = time.strftime("%Y-%m-%d %H:%M")
    save()
    return 0


def _save(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))


def cpu_reference(args, plan, results: dict) -> int:
    """The same training measure on this machine's CPU, saved beside the GPU figures."""
    reference = results.setdefault("cpu_train", {})
    for name in args.archs.split(","):
        for size, batch in plan:
            r = train_rate(name, size, batch, args.steps, args.epochs)
            r.update(backend=keras.backend.backend(), cpu_count=os.cpu_count())
            r["measured"] = time.strftime("%Y-%m-%d %H:%M")
            reference[f"{name}@{size}/b{batch}"] = r
            print("cpu train", name, size, batch, f"{r['img_s']:.1f} img/s", flush=True)
    _save(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
