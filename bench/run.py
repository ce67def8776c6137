"""Portrait Lab's benchmark suite: `make bench` writes bench/results.json and bench/README.md.

Every figure is the median of several runs; where two things are compared, both run in this same
script run, side by side, and the ratio is reported. Sections (run a subset with --only):

    predict   one 1024x768 photo: predict, and predict + explain("gradcam"), all four heads
              (and the default model with "hirescam", the Predict page's default)
    pipeline  training pipeline images/s from PNG files vs the study's float32 + ImageDataGenerator
    train     training images/s per architecture at 128 and 224 px
    ratio     cnn_custom and resnet50: training through the pipeline vs from tensors in memory
    memory    peak RSS of training over 5,000 / 15,000 / 30,000 pictures at 224 px
    app       streamlit start to first HTTP answer; Predict page to first prediction (browser)
    load      8 browser sessions upload a photo on Predict at once while a run trains: seconds
              from upload to the four labels, median and worst (tests/test_browser_load.py's helper)
    cli       `python -m portrait_core predict` in a fresh process: a file that is not an image
              (answered before TensorFlow is imported) against a real photo
    realfaces the study's recipe and ours on ../shared/realfaces/utkface-dev, side by side, at the
              same image size and time budget (skipped, saying why, where that folder is absent)
    faithfulness  deletion and insertion AUC of every explanation method for the committed
              default model (artifacts/default) on fresh synthetic pictures, and the seconds taken
    export    the default model exported as SavedModel, TFLite (and quantised) and ONNX: one
              picture's latency in each runtime and the size on disk, beside Keras'
    frozen    resnet50 --unfreeze 10 and 20 at 128 px: epoch seconds with and without the cache
              of the frozen layers' output (training/frozen.py), val metrics side by side
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

WORK = HERE / "work"  # git-ignored: generated data and model folders
REPEATS = 7
BATCH_128 = 32
ARCHS = ("cnn_custom", "mlp_custom", "resnet50", "alexnet")


def median_time(fn, repeats: int = REPEATS, warm: int = 2) -> float:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        gpu = out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "flags": cpu_flags(),
    }


# The instruction sets that change TensorFlow's CPU kernels (oneDNN picks its code by them).
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16")
NOTABLE_FLAGS += ("amx_tile", "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    """The NOTABLE_FLAGS this CPU has, from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in NOTABLE_FLAGS if f in have]
    except OSError:
        pass
    return []


def synthetic(n: int, size: int) -> Path:
    """A cached synthetic set of n pictures at size px under bench/work."""
    from portrait_core.synth import generate

    out = WORK / f"synth-{n}-{size}"
    if not (out / ".complete").exists():
        shutil.rmtree(out, ignore_errors=True)
        generate(out, n=n, seed=7, size=size, progress=False)
        (out / ".complete").touch()
    return out


def model_folder(name: str, size: int = 128) -> Path:
    """A random-weight model folder that load_predictor accepts (speed does not need training)."""
    import keras

    from portrait_core.models import create_model, get_spec
    from portrait_core.schema import ATTRIBUTE_KEYS, SCHEMA_VERSION

    folder = WORK / f"model-{name}-{size}"
    if (folder / "model.keras").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    options = {"weights": "none"} if name == "resnet50" else {}
    model = create_model(name, size, ATTRIBUTE_KEYS, **options)
    model.get_layer("zero_centre").set_mean(np.full((size, size, 3), 120, np.float32))
    model.save(folder / "model.keras")
    spec = get_spec(name)
    config = {
        "schema_version": SCHEMA_VERSION,
        "attributes": list(ATTRIBUTE_KEYS),
        "preprocessing": {"image_size": size},
        "model": {
            "name": name,
            "cam_layer": spec.cam_layer,
            "explain_methods": list(spec.explain_methods),
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    keras.backend.clear_session()
    return folder


def photo_1024x768():
    from PIL import Image

    face = Image.open(next(synthetic(200, 128).glob("1.png"))).convert("RGB")
    canvas = Image.new("RGB", (1024, 768), (90, 110, 130))
    canvas.paste(face.resize((700, 700)), (162, 34))
    return canvas


# --- 1. prediction latency --------------------------------------------------------------------
def bench_predict() -> dict:
    from portrait_core import load_predictor
    from portrait_core.paths import DEFAULT_MODEL
    from portrait_core.schema import ATTRIBUTE_KEYS

    photo = photo_1024x768()
    plan = []  # (label, folder, method): Grad-CAM (the target) where it applies
    if (DEFAULT_MODEL / "model.keras").exists():
        plan.append(("default", DEFAULT_MODEL, "gradcam"))
        plan.append(("default, Predict's default method", DEFAULT_MODEL, "hirescam"))
    plan += [(f"{a}@128", model_folder(a), None) for a in ARCHS]
    results = {}
    for label, folder, method in plan:
        p = load_predictor(folder)
        method = method or ("gradcam" if "gradcam" in p.explain_methods else "saliency")
        square = p.square(photo)
        explainer_ready = p.explain(photo, method)  # builds the tf-keras-vis wrapper once
        del explainer_ready
        classes_all = {a: 0 for a in ATTRIBUTE_KEYS}
        row = {
            "method": method,
            "predict_ms": 1000 * median_time(lambda p=p: p.predict(photo)),
            "predict_explain_ms": 1000
            * median_time(lambda p=p, m=method: (p.predict(photo), p.explain(photo, m))),
            "explain_one_head_ms": 1000
            * median_time(
                lambda p=p, m=method, s=square: p._explainer.heatmaps(s, {"hairstyle": 0}, m)
            ),
            "explain_four_heads_ms": 1000
            * median_time(
                lambda p=p, m=method, s=square, c=classes_all: p._explainer.heatmaps(s, c, m)
            ),
        }
        row["four_vs_one_head_ratio"] = row["explain_four_heads_ms"] / row["explain_one_head_ms"]
        results[label] = row
        print(
            "predict",
            label,
            {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()},
            flush=True,
        )
    return results


# --- 2. input pipeline ------------------------------------------------------------------------
def _parts(data: Path, size: int):
    from portrait_core.training.config import TrainConfig
    from portrait_core.training.train import prepare_data

    _, parts, _ = prepare_data(TrainConfig(data=str(data), image_size=size))
    return parts


def bench_pipeline(size: int = 128, n: int = 1000, batch: int = 32) -> dict:
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    from portrait_core.images import load_letterboxed
    from portrait_core.pipeline import InputPipeline

    parts = _parts(synthetic(n, 128), size)
    train = parts["train"]

    def ours_epoch(pipeline) -> float:
        start = time.perf_counter()
        count = sum(int(x.shape[0]) for x, _, _ in pipeline.train_dataset())
        return count / (time.perf_counter() - start)

    cold, warm = [], []
    for _ in range(3):
        pipeline = InputPipeline(**parts, image_size=size, batch_size=batch, seed=0)
        start = time.perf_counter()
        pipeline.mean_image()  # the first pass: decode + letterbox + cache
        cold.append(len(train) / (time.perf_counter() - start))
        warm.append(statistics.median([ours_epoch(pipeline) for _ in range(3)]))
        pipeline.close()

    def study_load() -> np.ndarray:
        return np.stack([load_letterboxed(p, size) for p in train.paths]).astype(np.float32)

    loads = []
    for _ in range(3):
        start = time.perf_counter()
        x = study_load()
        loads.append(len(train) / (time.perf_counter() - start))
    gen = ImageDataGenerator(
        rotation_range=15,
        width_shift_range=0.15,
        height_shift_range=0.15,
        zoom_range=0.15,
        horizontal_flip=True,
    )
    y = train.codes["gender"]

    def study_epoch() -> float:
        start = time.perf_counter()
        flow = gen.flow(x, y, batch_size=batch, seed=0)
        count = sum(len(flow[i][0]) for i in range(len(flow)))
        return count / (time.perf_counter() - start)

    study = [study_epoch() for _ in range(3)]
    out = {
        "images": len(train),
        "image_size": size,
        "ours_first_pass_img_s": statistics.median(cold),
        "ours_epoch_img_s": statistics.median(warm),
        "study_load_img_s": statistics.median(loads),
        "study_epoch_img_s": statistics.median(study),
        "study_float32_bytes": int(x.nbytes),
    }
    out["epoch_ratio_ours_vs_study"] = out["ours_epoch_img_s"] / out["study_epoch_img_s"]
    print("pipeline", out, flush=True)
    return out


# --- 3. training throughput ---------------------------------------------------------------------
def _train_rate(name: str, size: int, batch: int, steps: int) -> float:
    """Images/s of one epoch of `steps` batches of random tensors (after a tracing fit)."""
    import keras

    from portrait_core.models import create_model
    from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES
    from portrait_core.training.metrics import losses_and_metrics

    keras.backend.clear_session()
    options = {"weights": "none"} if name == "resnet50" else {}
    model = create_model(name, size, ATTRIBUTE_KEYS, **options)
    losses, metrics = losses_and_metrics(ATTRIBUTE_KEYS)
    model.compile(optimizer="adam", loss=losses, metrics=metrics)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch * steps, size, size, 3)).astype(np.float32)
    y = {a: rng.integers(0, ATTRIBUTES[a].n_classes, batch * steps) for a in ATTRIBUTE_KEYS}
    model.fit(x[:batch], {a: v[:batch] for a, v in y.items()}, batch_size=batch, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    return batch * steps / (time.perf_counter() - start)


def _steady_rate(model, dataset, steps: int) -> float:
    """Images/s of `steps` training steps after the first (iterator start-up excluded)."""
    import keras

    ends: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    model.fit(dataset, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[Clock()])
    return BATCH_128 * steps / (ends[-1] - ends[0])


def _pipeline_vs_memory(name: str, pipeline, steps: int, repeats: int = 3) -> dict:
    """One model fed alternately by the real pipeline and by tensors in memory.

    The in-memory side holds batches taken from the same pipeline (same structure: pictures,
    labels, sample weights), so both sides run the same compiled step; blocks alternate so that
    machine noise hits both alike. Each block's first step (iterator start) is left out.
    """
    import keras
    import tensorflow as tf

    from portrait_core.models import create_model
    from portrait_core.schema import ATTRIBUTE_KEYS
    from portrait_core.training.metrics import losses_and_metrics

    keras.backend.clear_session()
    piped = pipeline.train_dataset().repeat()
    batches = list(piped.take(steps + 1))
    x = tf.concat([b[0] for b in batches], 0)
    y = {a: tf.concat([b[1][a] for b in batches], 0) for a in batches[0][1]}
    w = {a: tf.concat([b[2][a] for b in batches], 0) for a in batches[0][2]}
    memory = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(BATCH_128).repeat()
    options = {"weights": "none"} if name == "resnet50" else {}
    model = create_model(name, 128, ATTRIBUTE_KEYS, **options)
    losses, metrics = losses_and_metrics(ATTRIBUTE_KEYS)
    model.compile(optimizer="adam", loss=losses, metrics=metrics)
    for feed in (memory, piped):  # trace (once, if the two feeds' specs match) before timing
        model.fit(feed, steps_per_epoch=1, epochs=1, verbose=0)
    mem, pipe = [], []
    for _ in range(repeats):
        mem.append(_steady_rate(model, memory, steps))
        pipe.append(_steady_rate(model, piped, steps))
    ratios = [p / m for p, m in zip(pipe, mem)]
    return {
        "memory_img_s": statistics.median(mem),
        "pipeline_img_s": statistics.median(pipe),
        "pipeline_vs_memory": statistics.median(ratios),
        "pipeline_vs_memory_blocks": ratios,
        "steps_per_block": steps,
    }


def bench_ratio(quick: bool = False) -> dict:
    """cnn_custom and resnet50 at 128 px: the real pipeline against tensors in memory."""
    from portrait_core.pipeline import InputPipeline
    from portrait_core.schema import ATTRIBUTE_KEYS

    parts = _parts(synthetic(1000, 128), 128)
    parts = {k: type(v)(v.paths, {a: v.codes[a] for a in ATTRIBUTE_KEYS}) for k, v in parts.items()}
    results = {}
    for name in ("cnn_custom", "resnet50"):
        pipeline = InputPipeline(**parts, image_size=128, batch_size=BATCH_128, seed=0)
        pipeline.mean_image()
        steps = 2 if quick else {"cnn_custom": 10, "resnet50": 4}[name]
        results[name] = _pipeline_vs_memory(name, pipeline, steps)
        pipeline.close()
        print("train pipeline", name, results[name], flush=True)
    return results


def bench_train(quick: bool = False) -> dict:
    results = {}
    plan = {"cnn_custom": 6, "mlp_custom": 6, "alexnet": 6, "resnet50": 3}
    for size in (128, 224):
        for name in ARCHS:
            steps = plan[name] if not quick else 2
            rate = _train_rate(name, size, BATCH_128 if size == 128 else 16, steps)
            results[f"{name}@{size}"] = {"epoch_img_s": rate}
            print("train", name, size, round(rate, 1), flush=True)
    return results


# --- 4. memory ------------------------------------------------------------------------------------
MEMORY_CHILD = """
import resource, sys, time
sys.path.insert(0, {project!r})
from portrait_core.training.config import make_config
from portrait_core.training.train import run_training
cfg = make_config({data!r}, "cnn_custom", image_size=224, epochs=1, batch_size=16,
                  max_steps_per_epoch=20, out={runs!r})
run_training(cfg)
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _linked_set(base: Path, n: int) -> Path:
    """n records by linking base's pairs under new numbers: same pixels, distinct records."""
    out = WORK / f"linked-{n}"
    if (out / ".complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pairs = sorted(base.glob("*.json"), key=lambda p: int(p.stem))
    for i in range(n):
        src = pairs[i % len(pairs)]
        text = json.loads(src.read_text("utf-8"))
        text["info"][0]["org_img_name"] = str(i + 1)
        (out / f"{i + 1}.json").write_text(json.dumps(text, ensure_ascii=False), "utf-8")
        os.symlink(src.with_suffix(".png"), out / f"{i + 1}.png")
    (out / ".complete").touch()
    return out


def bench_memory(sizes=(5000, 15000, 30000)) -> dict:
    base = synthetic(5000, 224)
    results = {}
    for n in sizes:
        data = base if n == 5000 else _linked_set(base, n)
        runs = tempfile.mkdtemp(prefix="bench_runs_")
        code = MEMORY_CHILD.format(project=str(PROJECT), data=str(data), runs=runs)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        shutil.rmtree(runs, ignore_errors=True)
        peak = [line for line in out.stdout.splitlines() if line.startswith("PEAK_KB")]
        if not peak:
            raise RuntimeError(f"memory run for {n} failed: {out.stderr[-2000:]}")
        results[str(n)] = {
            "peak_rss_gb": int(peak[0].split()[1]) / 1024**2,
            "seconds": seconds,
            "study_float32_gb": n * 224 * 224 * 3 * 4 / 1024**3,
        }
        print("memory", n, results[str(n)], flush=True)
    return results


# --- 5. app start -------------------------------------------------------------------------------
APP_BROWSE_S = 15  # how long the user looks at the Dataset page before opening Predict


def _serve_app():
    """Start `streamlit run app.py`; return (process, base URL, seconds to the first HTTP answer)."""
    import socket
    import urllib.request

    from portrait_core.paths import serve_command

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "PORTRAIT_LAB_DATA": str(synthetic(200, 128))}
    start = time.perf_counter()
    server = subprocess.Popen(
        serve_command(port),
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            urllib.request.urlopen(base + "/", timeout=1).read()
            return server, base, time.perf_counter() - start
        except OSError:
            if time.perf_counter() - start > 120:
                server.terminate()
                raise RuntimeError("streamlit did not answer in 120 s") from None
            time.sleep(0.05)


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _open_predict_to_prediction(page, base: str) -> float:
    """Seconds from opening Predict to the first labels shown for a sample picture."""
    t0 = time.perf_counter()
    page.goto(base + "/predict")
    page.get_by_text("pick a sample picture").first.wait_for(timeout=120_000)
    page.locator("[data-testid='stSelectbox']").last.click()
    page.get_by_role("option").nth(1).click()
    page.get_by_text("Gender:").first.wait_for(timeout=180_000)
    return time.perf_counter() - t0


def bench_app(repeats: int = 3) -> dict:
    """A fresh server per measure. Two users: one opens Predict at once (the cold path), one
    looks at the Dataset page for APP_BROWSE_S seconds first (the background warm-up runs)."""
    from playwright.sync_api import sync_playwright

    first_http, cold, browsed = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        for _ in range(repeats):
            for timings in (cold, browsed):
                server, base, answered = _serve_app()
                try:
                    first_http.append(answered)
                    page = browser.new_page()
                    if timings is browsed:
                        page.goto(base + "/")
                        page.get_by_role("heading", name="Dataset").wait_for(timeout=120_000)
                        time.sleep(APP_BROWSE_S)
                    timings.append(_open_predict_to_prediction(page, base))
                    page.close()
                finally:
                    _stop(server)
        browser.close()
    out = {
        "start_to_first_http_s": statistics.median(first_http),
        "open_predict_to_first_prediction_s": statistics.median(cold),
        "predict_after_browsing_s": statistics.median(browsed),
        "browse_s": APP_BROWSE_S,
        "repeats": repeats,
    }
    print("app", out, flush=True)
    return out


# --- 6. load -------------------------------------------------------------------------------------
LOAD_SESSIONS = 8
LOAD_ROUNDS = 3  # a fresh server and a fresh training run each
LOAD_EPOCHS = 500  # the run must outlast the sessions; it is stopped once they are done


def _first_epoch(run, timeout: float = 300) -> None:
    """Wait until the run has finished an epoch and is still training."""
    deadline = time.monotonic() + timeout
    while not (run.state == "running" and run.history):
        if run.state not in ("queued", "running") or time.monotonic() > deadline:
            raise RuntimeError(f"the run did not train: {run.status}")
        time.sleep(0.25)


def bench_load(rounds: int = LOAD_ROUNDS) -> dict:
    """What tests/test_browser_load.py checks, timed with its helper (tests/browser.py): per
    round, a fresh server, a small run training beside it, and LOAD_SESSIONS browser sessions
    uploading one photo on Predict at once once the run's first epoch is done."""
    sys.path.insert(0, str(PROJECT / "tests"))
    from browser import (
        CHROMIUM,
        CHROMIUM_ARGS,
        LABEL_TITLES,
        grace_hopper,
        launch_small_run,
        portrait_photo,
        predict_in_sessions,
        served_app,
    )
    from playwright.sync_api import sync_playwright

    data = synthetic(200, 128)
    photo = portrait_photo(grace_hopper(), WORK / "load-photo.jpg")
    times, epochs, alone = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(rounds):
            state = Path(tempfile.mkdtemp(prefix="bench_load_"))
            with served_app(data, state) as url:
                run = launch_small_run(data, state / "runs", LOAD_EPOCHS)
                try:
                    seen = predict_in_sessions(
                        browser, url, photo, LOAD_SESSIONS, lambda run=run: _first_epoch(run)
                    )
                    if run.state != "running":
                        raise RuntimeError(f"the run ended before the sessions: {run.status}")
                    for s in seen:
                        if s.exception or s.labels != list(LABEL_TITLES):
                            raise RuntimeError(f"a session failed: {s}")
                    times += [s.seconds for s in seen]
                    epochs.append(len(run.history))
                finally:
                    run.request_stop()
                    deadline = time.monotonic() + 120
                    while run.state in ("queued", "running") and time.monotonic() < deadline:
                        time.sleep(0.5)
                # for scale: one session alone on the same warm server, nothing training
                alone += [s.seconds for s in predict_in_sessions(browser, url, photo, 1)]
            shutil.rmtree(state, ignore_errors=True)
        browser.close()
    out = {
        "sessions": LOAD_SESSIONS,
        "rounds": rounds,
        "median_s": statistics.median(times),
        "worst_s": max(times),
        "seconds": [round(t, 3) for t in times],
        "run_epoch_when_done": epochs,
        "alone_median_s": statistics.median(alone),
    }
    print("load", out, flush=True)
    return out


# --- 7. the command line ---------------------------------------------------------------------
def bench_cli(repeats: int = 5) -> dict:
    """Wall seconds of `python -m portrait_core predict FILE` as a user runs it, median of
    `repeats` fresh processes each: a text file (target: well under a second) and a photo."""
    notes = WORK / "notes.txt"
    notes.write_text("these are notes, not a picture")
    photo = WORK / "cli-photo.jpg"
    photo_1024x768().save(photo, quality=90)

    def seconds(path: Path, code: int) -> float:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "portrait_core", "predict", str(path)],
            cwd=PROJECT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        took = time.perf_counter() - start
        if done.returncode != code or (code == 2 and len(done.stderr.splitlines()) != 1):
            raise RuntimeError(f"predict {path.name}: exit {done.returncode}, {done.stderr!r}")
        return took

    bad = [seconds(notes, 2) for _ in range(repeats)]
    good = [seconds(photo, 0) for _ in range(repeats)]
    return {
        "repeats": repeats,
        "not_an_image_s": statistics.median(bad),
        "not_an_image_worst_s": max(bad),
        "photo_s": statistics.median(good),
        "photo_over_not_an_image": statistics.median(good) / statistics.median(bad),
        "target_not_an_image_s": 1.0,
    }


# --- 7b. many pictures at once ------------------------------------------------------------------
BATCH_N = 1000


def bench_batch(repeats: int = 3, single_n: int = 200, cli_n: int = 5) -> dict:
    """Pictures per second labelling a folder of BATCH_N synthetic pictures (128 px) into a CSV
    with the default model, against one picture at a time: through the Python API (one forward
    pass each), and as a shell loop of `python -m portrait_core predict FILE` would (one process
    each). Medians of `repeats` (the CSV) and of each picture's time (the others)."""
    from portrait_core import load_predictor
    from portrait_core.batch_predict import BATCH, list_pictures, predict_pictures
    from portrait_core.images import open_rgb
    from portrait_core.paths import DEFAULT_MODEL
    from portrait_core.tf_startup import quiet_tensorflow

    quiet_tensorflow()
    folder = synthetic(BATCH_N, 128)
    paths = list_pictures([folder])
    predictor = load_predictor(DEFAULT_MODEL)
    predictor.predict(open_rgb(paths[0]))  # traced once, as a warm server would be
    batched = []
    for k in range(repeats):
        out = WORK / f"batch-{k}.csv"
        out.unlink(missing_ok=True)
        start = time.perf_counter()
        counts = predict_pictures(paths, predictor, out, progress=False)
        batched.append(time.perf_counter() - start)
        if counts["rows"] != len(paths) or counts["errors"]:
            raise RuntimeError(f"batch run wrote {counts}")
    single = []
    for path in paths[:single_n]:
        start = time.perf_counter()
        predictor.predict(open_rgb(path))
        single.append(time.perf_counter() - start)
    processes = []
    for path in paths[:cli_n]:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "portrait_core", "predict", str(path)],
            cwd=PROJECT, capture_output=True, check=True, timeout=300,
        )  # fmt: skip
        processes.append(time.perf_counter() - start)
    batch_rate = len(paths) / statistics.median(batched)
    single_rate = 1 / statistics.median(single)
    process_rate = 1 / statistics.median(processes)
    return {
        "model": predictor.model_name,
        "image_size": predictor.image_size,
        "pictures": len(paths),
        "batch": BATCH,
        "csv_seconds": statistics.median(batched),
        "csv_pictures_per_s": batch_rate,
        "one_at_a_time_pictures_per_s": single_rate,
        "one_process_each_pictures_per_s": process_rate,
        "csv_over_one_at_a_time": batch_rate / single_rate,
        "csv_over_one_process_each": batch_rate / process_rate,
        "repeats": repeats,
        "single_n": single_n,
        "cli_n": cli_n,
    }


# --- 8. real faces ----------------------------------------------------------------------------
REAL_FACES = PROJECT.parent / "shared" / "realfaces" / "utkface-dev"
REAL_FACES_RECIPES = {  # same network, the study's training settings against ours
    "study": ["--model", "small_resnet", "--preset", "study"],
    "ours": ["--model", "small_resnet"],
}
REAL_FACES_SIZE = 64
REAL_FACES_MINUTES = 12.5  # of fit; with data decoding, calibration and evaluation, under 15
CURVE_PNG = HERE / "real_faces.png"


def _train_real_faces(name: str, flags: list[str]) -> dict:
    out = WORK / "real-faces" / name
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        sys.executable, "-m", "portrait_core", "train", "--data", str(REAL_FACES),
        "--attributes", "gender,age", "--image-size", str(REAL_FACES_SIZE),
        "--epochs", "40", "--max-minutes", str(REAL_FACES_MINUTES), "--out", str(out), *flags,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=PROJECT, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {done.stderr.strip().splitlines()[-1:]}")
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    heads = metrics["attributes"]
    train_pictures = config["data"]["split_sizes"]["train"]
    robustness = {
        degradation: {
            head: round(v["balanced_accuracy_drop"], 4)
            for head, v in d["attributes"].items()
            if v.get("n")
        }
        for degradation, d in metrics["robustness"]["degradations"].items()
    }
    elapsed = np.cumsum([h["seconds"] for h in history]).tolist()
    return {
        "gender_accuracy": heads["gender"]["accuracy"],
        "age_balanced_accuracy": heads["age"]["balanced_accuracy"],
        "ece": {h: [heads[h].get("ece_before"), heads[h].get("ece_after")] for h in heads},
        "robustness_balanced_drop": robustness,
        "train_seconds": metrics["train_seconds"],
        "command_seconds": wall,
        "epochs": len(history),
        "best_epoch": metrics.get("best_epoch"),
        "train_pictures_per_s": train_pictures * len(history) / metrics["train_seconds"],
        "curve": {
            "seconds": elapsed,
            "val_gender_accuracy": [h.get("val_gender_accuracy") for h in history],
            "val_age_accuracy": [h.get("val_age_accuracy") for h in history],
        },
    }


def _plot_curves(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for name, r in results.items():
        minutes = [t / 60 for t in r["curve"]["seconds"]]
        for ax, key in zip(axes, ("val_gender_accuracy", "val_age_accuracy"), strict=True):
            ax.plot(minutes, r["curve"][key], marker=".", label=name)
    for ax, title in zip(axes, ("gender", "age band"), strict=True):
        ax.set_title(f"{title}: validation accuracy")
        ax.set_xlabel("minutes of training")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(CURVE_PNG, dpi=100)
    plt.close(fig)


def bench_real_faces() -> dict:
    """Both recipes through the CLI on utkface-dev (64 px, 12.5 minutes of fit each)."""
    if not REAL_FACES.is_dir():
        reason = f"{REAL_FACES} is absent (a fresh clone has no ../shared): section skipped"
        print(reason, file=sys.stderr)
        return {"skipped": reason}
    results = {name: _train_real_faces(name, flags) for name, flags in REAL_FACES_RECIPES.items()}
    _plot_curves(results)
    return {
        "data": str(REAL_FACES),
        "image_size": REAL_FACES_SIZE,
        "minutes": REAL_FACES_MINUTES,
        "recipes": results,
        "curve_png": CURVE_PNG.name,
    }


# --- 9. faithfulness of the heat maps --------------------------------------------------------
def bench_faithfulness() -> dict:
    """portrait_core.faithfulness on the committed default model, as Compare shows it for a run:
    every method it supports and random maps, on a sample of synthetic pictures drawn with
    another seed than its training data (seed 7 against 0), so none of them was trained on."""
    from portrait_core import load_predictor
    from portrait_core.faithfulness import evaluate_faithfulness, method_gain, method_means
    from portrait_core.paths import DEFAULT_MODEL

    if not (DEFAULT_MODEL / "model.keras").exists():
        reason = f"{DEFAULT_MODEL} has no model.keras: section skipped"
        print(reason, file=sys.stderr)
        return {"skipped": reason}
    p = load_predictor(DEFAULT_MODEL)
    pictures = sorted(synthetic(200, 128).glob("*.png"), key=lambda f: int(f.stem))
    start = time.perf_counter()
    section = evaluate_faithfulness(
        p.model, pictures, p.image_size, p.cam_layer, p.model_name, split="synthetic, seed 7"
    )
    seconds = time.perf_counter() - start  # the model loaded already: the evaluation alone
    summary = {}
    for method, entry in section["methods"].items():
        means = method_means(entry)
        if means is None:
            summary[method] = {"error": entry.get("error", "nothing measured")}
            continue
        summary[method] = {
            "deletion_auc": means[0],
            "insertion_auc": means[1],
            "gain_over_random": method_gain(entry),
            "pictures": max(e.get("n", 0) for e in entry.values()),
        }
    out = {
        "model": p.model_name,
        "run_id": p.config.get("run_id"),
        "image_size": p.image_size,
        "seconds": seconds,
        "summary": summary,
        **{k: v for k, v in section.items() if k != "seconds"},
    }
    print("faithfulness", json.dumps({"seconds": round(seconds, 1), **summary}), flush=True)
    return out


# --- 10. export -------------------------------------------------------------------------------
EXPORT_REPEATS = 50  # one picture takes a few ms: many repeats for a steady median
EXPORT_PARITY_PICTURES = 20


def bench_export(repeats: int = EXPORT_REPEATS) -> dict:
    """The committed default model through Keras (Predictor.predict_squares, temperatures applied
    in numpy) and through each export in its own runtime (portrait_core.export.load_exported):
    one letterboxed picture's latency (median of `repeats`, warm), the size on disk, the export's
    own seconds, and the largest probability difference from Keras on 20 synthetic pictures.
    Every runtime gets all the cores (TensorFlow takes them by default; the interpreters are
    told), so the figures compare runtimes, not thread counts."""
    from portrait_core import load_predictor
    from portrait_core.export import FORMATS, artifact_bytes, export_model, load_exported
    from portrait_core.images import load_letterboxed
    from portrait_core.paths import DEFAULT_MODEL
    from portrait_core.tf_startup import quiet_tensorflow

    if not (DEFAULT_MODEL / "model.keras").exists():
        reason = f"{DEFAULT_MODEL} has no model.keras: section skipped"
        print(reason, file=sys.stderr)
        return {"skipped": reason}
    quiet_tensorflow()
    p = load_predictor(DEFAULT_MODEL)
    one = p.square(photo_1024x768())[None]
    pictures = sorted(synthetic(200, 128).glob("*.png"), key=lambda f: int(f.stem))
    squares = np.stack(
        [load_letterboxed(f, p.image_size) for f in pictures[:EXPORT_PARITY_PICTURES]]
    )

    def as_arrays(results: list[dict]) -> dict[str, np.ndarray]:
        return {a: np.array([list(r[a]["probs"].values()) for r in results]) for a in p.attributes}

    reference = as_arrays(p.predict_squares(squares))
    out = {
        "model": p.model_name,
        "run_id": p.config.get("run_id"),
        "image_size": p.image_size,
        "threads": os.cpu_count(),
        "repeats": repeats,
        "parity_pictures": len(squares),
        "formats": {
            "keras": {
                "one_picture_ms": 1000 * median_time(lambda: p.predict_squares(one), repeats),
                "bytes": (DEFAULT_MODEL / "model.keras").stat().st_size,
                "artifact": "model.keras",
            }
        },
    }
    for fmt, quantize in [(f, False) for f in FORMATS] + [("tflite", True)]:
        name = f"{fmt} quantised" if quantize else fmt
        folder = WORK / "export" / name.replace(" ", "-")
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        artifact = export_model(DEFAULT_MODEL, fmt, folder, quantize=quantize)
        seconds = time.perf_counter() - start
        run = load_exported(folder, threads=os.cpu_count())
        got = run(squares)
        out["formats"][name] = {
            "one_picture_ms": 1000 * median_time(lambda run=run: run(one), repeats),
            "bytes": artifact_bytes(artifact),
            "artifact": artifact.name,
            "export_s": seconds,
            "max_difference": max(float(np.abs(got[a] - reference[a]).max()) for a in got),
        }
    for name, row in out["formats"].items():
        print("export", name, {k: v for k, v in row.items() if k != "artifact"}, flush=True)
    return out


# --- frozen backbones on cached features (training/frozen.py) ---------------------------------
# The ways compared, each a fresh, seeded resnet50. "op by op": the cached top on oneDNN, kernel
# by kernel, bit for bit the whole model's training (the default for runs this short); "XLA":
# compiled with jit_compile=True (the default from XLA_MIN_PICTURE_EPOCHS, training/frozen.py).
# The rest are experiments, measured so the README can say what they give; seed 1 is a noise
# reference, as is _frozen_seeds.
FROZEN_WAYS = {
    "whole": {"cached": False},
    "cached, op by op": {"jit": False},
    "cached, XLA": {"jit": True},
    "cached, op by op, seed 1": {"jit": False, "seed": 1},
    "cached, op by op, float16 features": {"jit": False, "features": "float16"},
    "cached, op by op, mixed_bfloat16": {"jit": False, "policy": "mixed_bfloat16"},
    "cached, XLA, mixed_bfloat16": {"jit": True, "policy": "mixed_bfloat16"},
}


class _FrozenWay:
    """One way of training resnet50 at 128 px, seeded: set up, then run an epoch at a time.

    bench_frozen runs the ways' epochs in turn (epoch 1 of each, then epoch 2, ...), so a
    change in the shared machine's load falls on all of them alike.
    """

    def __init__(self, weights: str, parts: dict, unfreeze: int, way: dict, donor=None):
        import keras

        from portrait_core.models import create_model
        from portrait_core.pipeline import InputPipeline
        from portrait_core.schema import ATTRIBUTE_KEYS
        from portrait_core.training.frozen import FeatureCache, plan_cut, step_macs
        from portrait_core.training.metrics import losses_and_metrics

        self.cached, seed = way.get("cached", True), way.get("seed", 0)
        keras.utils.set_random_seed(seed)
        model = create_model(
            "resnet50", 128, ATTRIBUTE_KEYS, weights=weights, unfreeze=unfreeze, pooling="gap"
        )
        pipeline = InputPipeline(
            **parts, image_size=128, batch_size=BATCH_128, seed=seed, augment=False
        )
        model.get_layer("zero_centre").set_mean(pipeline.mean_image())  # also decodes, caches
        self.pipeline, self.macs = pipeline, None
        start = time.perf_counter()
        if self.cached:  # fit_inputs' steps, with a hook for the features' storage type
            cut = plan_cut(model, augment=False, balance=None, replicas=1)
            cache = self.cache = FeatureCache(model, cut.layer, pipeline, WORK / "fz")
            if donor is None:
                cache.fill()
            else:  # the same frozen layers and pictures in the same order: the same features
                cache.features, cache.targets = donor.features, donor.targets
            if way.get("features"):
                cache.features = {k: v.astype(way["features"]) for k, v in cache.features.items()}
            self.model, self.train, self.val = cache.top, cache.train_dataset(), cache.val_dataset()
            self.described = {**cut.describe(), **cache.describe()}
            self.macs = step_macs(model, cut.layer)
            if way.get("policy"):  # the top computes in bfloat16; the softmax heads in float32
                for layer in self.model.layers[1:]:
                    if layer.name not in ATTRIBUTE_KEYS:
                        layer.dtype_policy = way["policy"]
        else:
            self.model, self.train = model, pipeline.train_dataset()
            self.val = pipeline.eval_dataset("val")
            self.described = {"used": False, "reason": "the whole model, to compare"}
        self.fill = time.perf_counter() - start if self.cached else 0.0
        losses, metrics = losses_and_metrics(ATTRIBUTE_KEYS)
        jit = {"jit_compile": way["jit"]} if "jit" in way else {}  # the whole model: as train.py
        self.model.compile(
            optimizer=keras.optimizers.Adam(1e-3), loss=losses, metrics=metrics, **jit
        )
        self.seconds: list[float] = []
        self.steps: list[float] = []  # training steps after each epoch's first (iterator start)
        self.history: dict = {}
        self.clock = self._clock()

    def _clock(self):
        import keras

        seconds, steps = self.seconds, self.steps

        class Clock(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = self.last = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                now = time.perf_counter()
                if batch and seconds:  # the first epoch traces (and compiles) the step
                    steps.append(now - self.last)
                self.last = now

            def on_epoch_end(self, epoch, logs=None):
                seconds.append(time.perf_counter() - self.start)

        return Clock()

    def epoch(self) -> None:
        done = len(self.seconds)
        history = self.model.fit(
            self.train,
            validation_data=self.val,
            initial_epoch=done,
            epochs=done + 1,
            verbose=0,
            callbacks=[self.clock],
        )
        self.history = history.history

    def result(self) -> dict:
        self.pipeline.close()
        s = self.seconds
        return {
            "cache": self.described,
            "jit_compile": bool(self.model.jit_compile),
            "fill_s": self.fill,
            "epoch_s": s,
            "first_epoch_s": s[0] + self.fill,  # the cache's pass included
            "later_epoch_median_s": statistics.median(s[1:]),
            "step_median_s": statistics.median(self.steps),
            "val": {k: float(v[-1]) for k, v in self.history.items() if k.startswith("val_")},
        }


def bench_frozen(n: int = 600, epochs: int = 5) -> dict:
    """resnet50 --unfreeze 10 and 20 at 128 px, with and without the cache, side by side.

    Random weights saved to a file stand in for ImageNet's (not downloadable here): speed and
    equality do not depend on the values. The same seed both ways, so the val metrics compare.
    Beside the measured speed-ups, the arithmetic bound: the ratio of the two ways' step MACs
    (training/frozen.py's step_macs), the most the cache can give at equal arithmetic speed.
    """
    import keras

    from portrait_core.schema import ATTRIBUTE_KEYS

    weights = WORK / "resnet50-random-128.weights.h5"
    if not weights.exists():
        donor = keras.applications.ResNet50(
            include_top=False, weights=None, input_shape=(128, 128, 3)
        )
        donor.save_weights(weights)
    parts = _parts(synthetic(n, 128), 128)
    parts = {k: type(v)(v.paths, {a: v.codes[a] for a in ATTRIBUTE_KEYS}) for k, v in parts.items()}
    out = {"pictures": {k: len(v) for k, v in parts.items()}, "epochs": epochs, "runs": {}}
    for unfreeze in (10, 20):
        keras.backend.clear_session()
        ways = {
            name: _FrozenWay(str(weights), parts, unfreeze, w) for name, w in FROZEN_WAYS.items()
        }
        for _ in range(epochs):
            for way in ways.values():
                way.epoch()
        row: dict = {"ways": {name: way.result() for name, way in ways.items()}}
        m = next(way.macs for way in ways.values() if way.macs is not None)
        row["macs"] = {
            "forward_whole": m.forward_whole,
            "forward_top": m.forward_top,
            "backward": m.backward,
            "whole_step": m.whole,
            "cached_step": m.cached,
            "step_bound": m.bound,
            "epoch_bound": m.epoch_bound(len(parts["train"]), len(parts["val"])),
        }
        whole = row["ways"]["whole"]
        for name, x in row["ways"].items():
            print("frozen", unfreeze, name, x, flush=True)
            if name == "whole":
                continue
            # epochs 2.. side by side: the median of each epoch's ratio
            x["speed_up_after_first"] = statistics.median(
                a / b for a, b in zip(whole["epoch_s"][1:], x["epoch_s"][1:])
            )
            # per training step, without each epoch's fixed costs (iterators, validation start)
            x["step_speed_up"] = whole["step_median_s"] / x["step_median_s"]
            x["val_max_difference"] = {
                kind: max(
                    abs(x["val"][k] - whole["val"][k]) for k in whole["val"] if k.endswith(kind)
                )
                for kind in ("accuracy", "loss")
            }
        out["runs"][f"unfreeze {unfreeze}"] = row
        if unfreeze == 10:
            donor = ways["cached, op by op"].cache
            out["seeds"] = _frozen_seeds(str(weights), parts, unfreeze, donor, epochs)
    return out


def _frozen_seeds(weights: str, parts: dict, unfreeze: int, donor, epochs: int, n: int = 5):
    """The noise the ways' val differences are judged against: the cached top trained from n
    seeds (head weights, batch order, dropout draws), op by op and with XLA, on one cache (the
    seed-0 fill: its pictures in its order, the seed then shuffling the batches)."""
    out: dict = {"unfreeze": unfreeze, "seeds": n, "val": {}}
    for name, jit in (("op by op", False), ("XLA", True)):
        runs = []
        for seed in range(n):
            way = _FrozenWay(weights, parts, unfreeze, {"jit": jit, "seed": seed}, donor)
            for _ in range(epochs):
                way.epoch()
            runs.append(way.result()["val"])
        out["val"][name] = {k: [r[k] for r in runs] for k in runs[0]}
    print("frozen seeds", out, flush=True)
    return out


SECTIONS = {
    "predict": bench_predict,
    "pipeline": bench_pipeline,
    "train": bench_train,
    "ratio": bench_ratio,
    "memory": bench_memory,
    "app": bench_app,
    "load": bench_load,
    "cli": bench_cli,
    "batch": bench_batch,
    "realfaces": bench_real_faces,
    "faithfulness": bench_faithfulness,
    "export": bench_export,
    "frozen": bench_frozen,
}


def write_report(results: dict) -> None:
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    from bench.report import write_readme

    write_readme()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--label", default="cpu", help="results key, e.g. cpu or gpu")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    path = HERE / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    entry = results.setdefault(args.label, {})
    names = args.only.split(",")
    here = machine()
    # The entry's machine is the one its other sections ran on: a subset measured elsewhere
    # records its own machine (measured_on) rather than relabelling figures it did not make.
    if set(names) >= set(SECTIONS) or entry.get("machine", here) == here:
        entry["machine"] = here
        entry["date"] = time.strftime("%Y-%m-%d %H:%M")
    for name in names:
        entry[name] = SECTIONS[name]()
        entry.setdefault("measured", {})[name] = time.strftime("%Y-%m-%d %H:%M")
        if here != entry["machine"]:
            entry.setdefault("measured_on", {})[name] = here
        else:
            entry.get("measured_on", {}).pop(name, None)
        write_report(results)  # keep what is measured even if a later section fails


if __name__ == "__main__":
    main()
