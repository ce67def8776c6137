"""bench/results.json (+ results_gpu.json) -> bench/README.md's tables, each target beside its figure.

`python bench/report.py` rebuilds the README from the two files without measuring anything.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _f(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _check(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "**missed**")


def _rate(v: dict):
    """An architecture's epoch rate (older results stored it as memory_img_s)."""
    return v.get("epoch_img_s", v.get("memory_img_s"))


def gpu_markdown(gpu: dict, cpu_train: dict | None) -> list[str]:
    """bench/gpu.py's figures, beside the CPU suite's training rates where both exist."""
    lines = [
        "",
        f"## gpu: {gpu.get('device')}, {gpu.get('cpu_count')} CPU cores, Keras {gpu.get('keras')} "
        f"on {gpu.get('backend')} ({gpu.get('started')})",
        "",
        "Made by `bench/gpu.py` (its docstring says why not the whole suite). The lent GPU machine "
        "reaches no package registry and TensorFlow's GPU wheels cannot be carried there, so the "
        "input pipeline, the Predictor, Grad-CAM and the app were not measured on it. These are "
        "the same registered models, losses and optimizer, trained from random pictures in "
        "memory, on Keras' JAX backend. The CPU column is section 3 above (TensorFlow backend, 2 "
        "cores, measured in session 1 with each epoch a separate short `fit`, so it carries some "
        "per-call overhead; the ratio section's in-memory rate for cnn_custom was 22.9 img/s): a "
        "different backend and machine, so the ratio says roughly what the hardware buys.",
        "",
        "| model | size / batch | GPU img/s | first epoch (compile) s | CPU img/s | GPU / CPU |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in gpu.get("train", {}).items():
        name, rest = key.split("@")
        size, batch = rest.split("/b")
        cpu = (cpu_train or {}).get(f"{name}@{size}", {})
        cpu_batch = 32 if size == "128" else 16
        cpu_rate = _rate(cpu) if int(batch) == cpu_batch else None
        same_script = gpu.get("cpu_train", {}).get(key)  # bench/gpu.py --cpu-reference
        if same_script:
            cpu_rate = same_script["img_s"]
        ratio = r["img_s"] / cpu_rate if cpu_rate else None
        lines.append(
            f"| {name} | {size} px / {batch} | {_f(r['img_s'])} | {_f(r.get('first_epoch_s'))} | "
            f"{_f(cpu_rate)} | {_f(ratio, 0) + 'x' if ratio else 'n/a'} |"
        )
    lines += [
        "",
        "Forward pass of one picture, all four heads (compiled, the model alone: no decoding, "
        "letterboxing or Grad-CAM; median of 50):",
        "",
        "| model | one picture ms | batch of 64, img/s |",
        "|---|---|---|",
    ]
    for key, r in gpu.get("predict", {}).items():
        lines.append(f"| {key} | {_f(r['one_ms'], 2)} | {_f(r['batch64_img_s'], 0)} |")
    for run in gpu.get("added", []):
        lines += [
            "",
            f"Added {run.get('started')} on {run.get('device')}, Keras {run.get('keras')} on "
            f"{run.get('backend')}: {run.get('archs')} (`bench/gpu.py --merge`).",
        ]
    if gpu.get("cpu_train"):

        def seen(field: str) -> str:
            return "/".join(sorted({str(r.get(field, "?")) for r in gpu["cpu_train"].values()}))

        lines += [
            "",
            f"CPU column for {', '.join(gpu['cpu_train'])}: the same script on this project's CPU "
            f"machine ({seen('cpu_count')} cores, Keras on {seen('backend')}, {seen('measured')}; "
            "`bench/gpu.py --cpu-reference`), so that ratio compares like with like.",
        ]
    return lines


def real_faces_markdown(r: dict, measured_on: dict) -> list[str]:
    on = measured_on.get("realfaces")
    lines = ["", "### 8. Real faces: the study's recipe and ours on utkface-dev"]
    if "skipped" in r:
        return lines + ["", f"Skipped: {r['skipped']}."]
    if on:
        lines += [
            "",
            f"Measured on {on['cpu']}, {on['cores']} cores, flags {', '.join(on.get('flags', []))}.",
        ]
    lines += [
        "",
        f"small_resnet at {r['image_size']} px, each through `python -m portrait_core train` "
        f"with a {r['minutes']}-minute time budget for fit, one after the other in one run.",
        "",
        "| recipe | gender accuracy | age balanced accuracy | ECE gender (before -> after) "
        "| ECE age | fit seconds | epochs | training pictures/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, x in r["recipes"].items():
        ece = {
            h: " -> ".join(_f(v, 3) if v is not None else "-" for v in x["ece"][h])
            for h in x["ece"]
        }
        lines.append(
            f"| {name} | {_f(x['gender_accuracy'], 3)} | {_f(x['age_balanced_accuracy'], 3)} | "
            f"{ece.get('gender', '-')} | {ece.get('age', '-')} | {_f(x['train_seconds'], 0)} | "
            f"{x['epochs']} | {_f(x['train_pictures_per_s'], 0)} |"
        )
    names = list(r["recipes"])
    degradations = list(next(iter(r["recipes"].values()))["robustness_balanced_drop"])
    lines += [
        "",
        "Balanced-accuracy drop under each degradation (clean minus degraded; over 0.05 is a miss):",
        "",
        "| degradation | " + " | ".join(f"{n}: gender | {n}: age" for n in names) + " |",
        "|---|" + "---|---|" * len(names),
    ]
    for d in degradations:
        cells = []
        for n in names:
            drop = r["recipes"][n]["robustness_balanced_drop"][d]
            cells += [_f(drop.get("gender"), 3), _f(drop.get("age"), 3)]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += ["", f"![validation accuracy against training time]({r['curve_png']})"]
    return lines


def faithfulness_markdown(r: dict, measured_on: dict) -> list[str]:
    """bench_faithfulness: one row per method, the most faithful in bold."""
    on = measured_on.get("faithfulness")
    lines = ["", "### 9. Faithfulness of the heat maps: deletion and insertion AUC"]
    if "skipped" in r:
        return lines + ["", f"Skipped: {r['skipped']}."]
    start = r.get("start_probability", {})
    mean_of = {k: sum(v.values()) / len(v) for k, v in start.items() if v}
    lines += [
        "",
        f"The committed default model ({r['model']} at {r['image_size']} px, run "
        f"`{r.get('run_id')}`), on {r['n_images']} synthetic pictures it never saw "
        f"({r['split']}), every head following its own predicted label, {r['steps']} steps a "
        f"curve: {_f(r['seconds'], 1)} s in all"
        + (f" ({on['cpu']}, {on['cores']} cores)" if on else "")
        + ". Deletion sets the hottest pixels to the training mean first (lower is better); "
        "insertion puts them back into a blurred copy first (higher is better); the gain is "
        "insertion minus deletion less that of random maps on the same pictures, averaged over "
        "the heads (`portrait_core/faithfulness.py`). Score-CAM, being slow, on a third of the "
        "pictures.",
        "",
        "| method | deletion AUC | insertion AUC | gain over random | pictures |",
        "|---|---|---|---|---|",
    ]
    for method, x in r["summary"].items():
        name = f"**{method}** (most faithful)" if method == r.get("most_faithful") else method
        if "error" in x:
            lines.append(f"| {name} | failed: {x['error']} | | | |")
            continue
        lines.append(
            f"| {name} | {_f(x['deletion_auc'], 3)} | {_f(x['insertion_auc'], 3)} | "
            f"{_f(x['gain_over_random'], 3)} | {x['pictures']} |"
        )
    if mean_of:
        lines += [
            "",
            "Mean probability of the predicted label, over the heads: on the pictures "
            f"{_f(mean_of.get('picture'), 3)}, on the training mean image "
            f"{_f(mean_of.get('mean_image'), 3)}, on the blurred pictures "
            f"{_f(mean_of.get('blurred'), 3)} (where the curves start and end).",
        ]
    return lines


def export_markdown(r: dict, measured_on: dict) -> list[str]:
    """bench_export: each format beside Keras, latency and size, and the parity measured."""
    on = measured_on.get("export")
    lines = ["", "### 10. Export: the default model in other runtimes"]
    if "skipped" in r:
        return lines + ["", f"Skipped: {r['skipped']}."]
    keras = r["formats"]["keras"]
    lines += [
        "",
        f"The committed default model ({r['model']} at {r['image_size']} px, run "
        f"`{r.get('run_id')}`), exported with `python -m portrait_core export` and run by "
        "`portrait_core.export.load_exported` in each format's own runtime, "
        f"{r['threads']} threads each"
        + (f" ({on['cpu']}, {on['cores']} cores)" if on else "")
        + f". One letterboxed picture, warm, median of {r['repeats']}; Keras is "
        "`Predictor.predict_squares` (its temperatures applied in numpy, as the exports do in "
        f"the graph). The difference is the largest of any probability on {r['parity_pictures']} "
        "synthetic pictures against Keras'.",
        "",
        "| format | file | one picture ms | speed-up over Keras | size MB | export s | max difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, x in r["formats"].items():
        speed = keras["one_picture_ms"] / x["one_picture_ms"]
        difference = x.get("max_difference")
        lines.append(
            f"| {name} | `{x['artifact']}` | {_f(x['one_picture_ms'], 2)} | "
            f"{_f(speed, 1)}x | {_f(x['bytes'] / 1e6, 2)} | {_f(x.get('export_s'), 1)} | "
            + ("-" if difference is None else f"{difference:.1e}")
            + " |"
        )
    return lines


def frozen_markdown(r: dict, measured_on: dict) -> list[str]:
    """bench_frozen: resnet50 epoch seconds with and without the frozen layers' cache."""
    on = measured_on.get("frozen")
    first = next(iter(r["runs"].values()))
    heads = sorted(first["ways"]["whole"]["val"])
    bounds = {name.split()[-1]: row["macs"] for name, row in r["runs"].items() if row.get("macs")}

    def macs(name: str) -> str:
        m = bounds[name]
        return (
            f"--unfreeze {name}: {m['whole_step'] / 1e6:,.0f} M MACs per picture for a step of "
            f"the whole model ({m['forward_whole'] / 1e6:,.0f} M forward, "
            f"{m['backward'] / 1e6:,.0f} M backward), {m['cached_step'] / 1e6:,.0f} M on cached "
            f"features ({m['forward_top'] / 1e6:,.0f} M forward): at most "
            f"{m['step_bound']:.1f}x per step, {m['epoch_bound']:.1f}x per epoch"
        )

    lines = [
        "",
        "## Frozen backbones on cached features",
        "",
        f"resnet50 at 128 px, random weights from a file, no augmentation, {r['epochs']} epochs "
        f"on {r['pictures']['train']} training and {r['pictures']['val']} validation pictures, "
        "batches of 32, seed 0 unless the row says otherwise. *whole*: every epoch runs all "
        "of ResNet50; *cached*: the frozen layers' output is computed once (its pass is "
        "counted in the first epoch), then only the top trains "
        "(`portrait_core/training/frozen.py`): *op by op* on oneDNN's kernels, bit for bit the "
        "whole model's training, or compiled with *XLA* (`jit_compile=True`), which "
        "`fit_inputs` picks for runs of at least 10,000 training pictures x epochs "
        "(`XLA_MIN_PICTURE_EPOCHS`; this set-up, "
        f"{r['pictures']['train'] * r['epochs']:,}, runs op by op). The other rows are "
        "experiments, not kept. Each row is its own seeded model; the rows' epochs ran in "
        "turn (epoch 1 of each, then epoch 2, ...), so the shared machine's load fell on all "
        "alike; the speed-up is the median of the epochs' ratios to *whole*, epochs 2 to "
        f"{r['epochs']}." + (f" Measured on {on['cpu']}, {on['cores']} cores." if on else ""),
        "",
        "**The bound.** The top still runs the blocks it trains, forward and backward, and the "
        "backward pass is the same both ways: the cache saves only the frozen bottom's forward "
        "pass. `step_macs` counts the multiply-accumulates (convolutions and dense layers, from "
        "the Keras layers; batch norm, activations and adds left out) of one training step: "
        + "; ".join(macs(name) for name in bounds)
        + " (the epoch figure counts validation, forward only both ways). That ratio is the "
        "largest speed-up the cache can give while the top's arithmetic runs as fast as the "
        "whole model's: the *arithmetic bound* column (step / epoch).",
        "",
        "| unfreeze | way | cut | first epoch s | later epochs s (median) | speed-up | "
        "step ms (median) | step speed-up | arithmetic bound (step / epoch) | "
        "val difference from whole, max (accuracy / loss) | "
        + " | ".join(h.removeprefix("val_") for h in heads)
        + " |",
        "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(heads),
    ]
    for name, row in r["runs"].items():
        unfreeze = name.split()[-1]
        m = row.get("macs")
        for way, x in row["ways"].items():
            whole = way == "whole"
            bound = f"{m['step_bound']:.1f}x / {m['epoch_bound']:.1f}x" if m and not whole else ""
            diff = x.get("val_max_difference")
            diff = f"{diff['accuracy']:.4f} / {diff['loss']:.4f}" if diff else ""
            lines.append(
                f"| {unfreeze} | {way} | {x['cache'].get('cut_layer') or '-'} | "
                f"{_f(x['first_epoch_s'], 2)} | {_f(x['later_epoch_median_s'], 2)} | "
                + ("" if whole else _f(x["speed_up_after_first"], 1) + "x")
                + f" | {_f(x['step_median_s'] * 1000, 0)} | "
                + ("" if whole else _f(x["step_speed_up"], 1) + "x")
                + f" | {bound} | {diff} | "
                + " | ".join(_f(x["val"][h], 4) for h in heads)
                + " |"
            )
    seeds = r.get("seeds")
    if seeds:
        ways = seeds["val"]
        a, b = ways["op by op"], ways["XLA"]

        def spread(values) -> str:
            return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"

        lines += [
            "",
            f"**Noise.** The cached top (--unfreeze {seeds['unfreeze']}) trained from "
            f"{seeds['seeds']} seeds (head weights, batch order, dropout draws), op by op and "
            f"with XLA, on the same cached features, {r['epochs']} epochs each: val metrics, "
            "mean ± standard deviation over the seeds, and the difference XLA minus op by op "
            "seed by seed (the same start and batches; other dropout masks and sums).",
            "",
            "| val metric | op by op | XLA | XLA − op by op, same seed |",
            "|---|---|---|---|",
        ]
        for k in sorted(a):
            diff = [y - x for x, y in zip(a[k], b[k])]
            lines.append(
                f"| {k.removeprefix('val_')} | {spread(a[k])} | {spread(b[k])} | {spread(diff)} |"
            )
    return lines + _frozen_verdict(r)


def _frozen_verdict(r: dict) -> list[str]:
    """What the frozen section's figures say, in words, with the figures."""
    runs = {name.split()[-1]: row for name, row in r["runs"].items()}
    needed = {"whole", "cached, XLA", "cached, XLA, mixed_bfloat16", "cached, op by op"}
    needed |= {f"cached, op by op, {e}" for e in ("float16 features", "mixed_bfloat16")}
    if not all(needed <= set(row["ways"]) and row.get("macs") for row in runs.values()):
        return []  # results of another set of ways: the table says what there is

    def x(u: str, way: str) -> dict:
        return runs[u]["ways"][way]

    def measured(u: str) -> str:
        op, xla, m = x(u, "cached, op by op"), x(u, "cached, XLA"), runs[u]["macs"]
        return (
            f"--unfreeze {u}: {op['speed_up_after_first']:.1f}x per epoch op by op, "
            f"{xla['speed_up_after_first']:.1f}x with XLA ({op['step_speed_up']:.1f}x and "
            f"{xla['step_speed_up']:.1f}x per step), of at most {m['epoch_bound']:.1f}x "
            f"({m['step_bound']:.1f}x)"
        )

    def pays_back(u: str) -> str:
        op, xla = x(u, "cached, op by op"), x(u, "cached, XLA")
        cost = xla["epoch_s"][0] - op["epoch_s"][0]
        saved = op["later_epoch_median_s"] - xla["later_epoch_median_s"]
        return (
            f"--unfreeze {u}: {cost:.1f} s once, {saved:.2f} s an epoch saved, paid back "
            f"after {cost / saved:.0f} epochs of {r['pictures']['train']} pictures "
            f"({cost / saved * r['pictures']['train']:,.0f} pictures trained)"
        )

    def step(u: str, way: str) -> str:
        return f"{x(u, way)['step_median_s'] * 1000:.0f}"

    def rate(u: str, way: str) -> str:  # the top's MACs per second over the whole model's
        return f"{x(u, way)['step_speed_up'] / runs[u]['macs']['step_bound']:.2f}x"

    u = next(iter(runs))
    ratio = x(u, "cached, XLA")["step_median_s"] / x(u, "cached, op by op")["step_median_s"]
    noise = r.get("seeds", {}).get("val", {})
    if noise:
        a, b = noise["op by op"]["val_loss"], noise["XLA"]["val_loss"]
        diff = [q - p for p, q in zip(a, b)]
        noise_line = (
            f": over {len(a)} seeds XLA's val loss differs from op by op's by "
            f"{statistics.mean(diff):+.3f} on average, against a spread of "
            f"{statistics.stdev(diff):.3f} (the seeds table above)"
        )
    else:
        noise_line = ""
    return [
        "",
        "**What it gives.** " + "; ".join(measured(u) for u in runs) + ". Op by op, the "
        "top's small 4x4 convolutions and its elementwise passes (Adam's updates, batch norm, "
        "one oneDNN kernel each) run its arithmetic at "
        + " and ".join(f"{rate(u, 'cached, op by op')} (--unfreeze {u})" for u in runs)
        + " the whole model's rate; XLA fuses the elementwise passes and does the same step "
        f"in {ratio:.2f}x the time (--unfreeze {u}), "
        + " and ".join(f"{rate(u, 'cached, XLA')}" for u in runs)
        + " the whole model's rate. Its compile (one per batch shape, training and validation) "
        "is paid in the first epoch: "
        + "; ".join(pays_back(u) for u in runs)
        + ", hence XLA only from 10,000 pictures x epochs. Its results are not the whole "
        "model's bit for bit (other dropout masks: XLA's random numbers are not TensorFlow's "
        "CPU kernels'), but the same within noise" + noise_line + ".",
        "",
        "**Not kept.** float16 features (half the memory): no faster (step "
        f"{step(u, 'cached, op by op, float16 features')} ms against "
        f"{step(u, 'cached, op by op')} ms), and the training no longer the whole model's bit "
        "for bit. `mixed_bfloat16` for the top: slower op by op "
        f"({step(u, 'cached, op by op, mixed_bfloat16')} ms; oneDNN does use its "
        "avx512_bf16 kernels here, but at 4x4 pixels the conversions and reorders cost more "
        "than they save: a 3x3 512-channel convolution's forward and backward, batch 32, took "
        "104 ms in bfloat16 against 96 ms in float32), no faster with XLA "
        f"({step(u, 'cached, XLA, mixed_bfloat16')} ms against {step(u, 'cached, XLA')}), and "
        "not the same arithmetic. Measured apart, not in the table: reading the features from "
        "tensors in memory instead of a NumPy gather saves ~20 ms of CPU an epoch (under 2 %); "
        "XLA for the whole model was no faster; a larger batch for the top (128: 1.35x more "
        "pictures a second) is another training, not the same one faster.",
        "",
        "**Is 10x reachable?** Not with the same training on this machine. At equal arithmetic "
        "speed the cache can give at most "
        + " and ".join(
            f"{runs[u]['macs']['epoch_bound']:.1f}x per epoch for --unfreeze {u}" for u in runs
        )
        + ": the backward pass and the trained blocks' forward pass are the same both ways, "
        "and they are what remains. Past the bound only by making the top's arithmetic faster "
        "than the whole model's, and even XLA's stays below it; bfloat16 would need a CPU "
        "whose bfloat16 kernels pay at these sizes (AMX). Fewer trained layers move the bound "
        "itself (--unfreeze 3, conv5's last batch norm and the heads: `step_macs` counts 16x "
        "per step).",
    ]


def markdown(results: dict, gpu: dict | None = None) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Made by `make bench` (`bench/run.py`). Each figure is the median of several runs; compared",
        "figures ran side by side in the same script run. Machines are shared and noisy: read ratios",
        "before absolute numbers.",
    ]
    for label, entry in results.items():
        m = entry.get("machine", {})
        lines += [
            "",
            f"## {label}: {m.get('cpu')}, {m.get('cores')} cores"
            + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")
            + f" ({entry.get('date')})",
        ]
        if entry.get("measured"):
            when = ", ".join(f"{k} {v}" for k, v in entry["measured"].items())
            lines += [
                "",
                f"Sections last measured: {when}. Sections not listed come from an earlier run "
                "of the suite on the same machine.",
            ]
        if "predict" in entry:
            lines += [
                "",
                "### 1. Prediction latency (one 1024x768 photo, warm, all four heads)",
                "",
                "| model | predict ms | predict + explain ms | explain 1 head ms | explain 4 heads ms | 4 vs 1 head |",
                "|---|---|---|---|---|---|",
            ]
            for name, r in entry["predict"].items():
                lines.append(
                    f"| {name} ({r['method']}) | {_f(r['predict_ms'])} | {_f(r['predict_explain_ms'])} | "
                    f"{_f(r['explain_one_head_ms'])} | {_f(r['explain_four_heads_ms'])} | {_f(r['four_vs_one_head_ratio'], 2)}x |"
                )
            d = entry["predict"].get("default")
            if d:
                lines += [
                    "",
                    f"Targets for the default model: predict under 50 ms "
                    f"({_check(d['predict_ms'] < 50)}), predict + explain under 300 ms "
                    f"({_check(d['predict_explain_ms'] < 300)}).",
                ]
            h = entry["predict"].get("default, Predict's default method")
            if h:
                lines.append(
                    f"With {h['method']}, the Predict page's default method: predict + explain "
                    f"{_f(h['predict_explain_ms'])} ms ({_check(h['predict_explain_ms'] < 300)})."
                )
        if "pipeline" in entry:
            p = entry["pipeline"]
            lines += [
                "",
                f"### 2. Input pipeline ({p['images']} PNGs, {p['image_size']} px, batch 32, augmented)",
                "",
                "| way | images/s |",
                "|---|---|",
                f"| ours, first pass (decode + letterbox + cache) | {_f(p['ours_first_pass_img_s'])} |",
                f"| ours, epoch from the uint8 cache (shuffle, batch, augment) | {_f(p['ours_epoch_img_s'])} |",
                f"| study: load into float32 array | {_f(p['study_load_img_s'])} |",
                f"| study: ImageDataGenerator epoch | {_f(p['study_epoch_img_s'])} |",
                "",
                f"Ours vs the study's way, per epoch: {_f(p['epoch_ratio_ours_vs_study'], 2)}x.",
            ]
            fastest = max(
                (
                    v.get("epoch_img_s", v.get("memory_img_s"))
                    for k, v in entry.get("train", {}).items()
                    if k.endswith("@128")
                ),
                default=None,
            )
            if fastest:
                ratio = p["ours_epoch_img_s"] / fastest
                lines.append(
                    f"Against the fastest model's training rate at 128 px ({_f(fastest)} img/s): "
                    f"{_f(ratio, 2)}x (target 3x: {_check(ratio >= 3)})."
                )
        if "train" in entry:
            lines += [
                "",
                "### 3. Training throughput (images/s of an epoch of random tensors in memory)",
                "",
                "| model | 128 px | 224 px |",
                "|---|---|---|",
            ]
            names = sorted({k.split("@")[0] for k in entry["train"]})
            for name in names:
                a = entry["train"].get(f"{name}@128", {})
                b = entry["train"].get(f"{name}@224", {})
                lines.append(f"| {name} | {_f(_rate(a))} | {_f(_rate(b))} |")
            lines += [
                "",
                "Real pipeline against the same model fed from tensors in memory (128 px, batch 32):"
                " one model and one trace, fed in alternating blocks, each block's first step left"
                " out; the ratio is the median of the blocks' ratios.",
                "",
                "| model | steps per block | in memory img/s | pipeline img/s | pipeline / memory |",
                "|---|---|---|---|---|",
            ]
            for name in names:
                a = entry.get("ratio", {}).get(name) or entry["train"].get(f"{name}@128", {})
                ratio = a.get("pipeline_vs_memory")
                if ratio is None:
                    continue
                lines.append(
                    f"| {name} | {a.get('steps_per_block', '')} | {_f(a['memory_img_s'])} | "
                    f"{_f(a['pipeline_img_s'])} | {_f(ratio, 2)} {_check(ratio >= 0.9)} |"
                )
        if "memory" in entry:
            lines += [
                "",
                "### 4. Peak resident memory of a training run at 224 px (cnn_custom, 20 steps)",
                "",
                "| pictures | peak RSS GB | study's float32 array GB | seconds |",
                "|---|---|---|---|",
            ]
            for n, r in entry["memory"].items():
                lines.append(
                    f"| {int(n):,} | {_f(r['peak_rss_gb'], 2)} {_check(r['peak_rss_gb'] < 3)} | "
                    f"{_f(r['study_float32_gb'], 1)} | {_f(r['seconds'], 0)} |"
                )
        if "app" in entry:
            a = entry["app"]
            lines += [
                "",
                f"### 5. App start (median of {a.get('repeats', 1)}, a fresh server each)",
                "",
                f"- `streamlit run app.py` to the first HTTP answer: {_f(a['start_to_first_http_s'], 2)} s",
                f"- opening Predict first thing to the first prediction shown (Chromium): {_f(a['open_predict_to_first_prediction_s'], 2)} s",
            ]
            if "predict_after_browsing_s" in a:
                lines.append(
                    f"- opening Predict after {a['browse_s']} s on the Dataset page (the models "
                    f"warm up in the background meanwhile): {_f(a['predict_after_browsing_s'], 2)} s"
                )
        if "load" in entry:
            d = entry["load"]
            on = entry.get("measured_on", {}).get("load")
            lines += [
                "",
                f"### 6. Load: {d['sessions']} sessions on Predict at once while a run trains"
                + (f" ({on['cpu']}, {on['cores']} cores)" if on else ""),
                "",
                f"Each of {d['rounds']} rounds: a fresh server, a small cnn_custom run training "
                "beside it (48 px, 2 steps an epoch), and the sessions (Chromium contexts) "
                "uploading one 1024x768 photo at once after the run's first epoch "
                "(tests/test_browser_load.py's helper). Seconds from the upload to the four "
                f"labels shown, over all {len(d['seconds'])} sessions:",
                "",
                f"- median {_f(d['median_s'], 2)} s, worst {_f(d['worst_s'], 2)} s "
                f"(best {_f(min(d['seconds']), 2)} s)",
                "- the run's epoch when each round's sessions were done: "
                + ", ".join(str(e) for e in d["run_epoch_when_done"]),
            ]
            if "alone_median_s" in d:
                lines.append(
                    "- for scale, one session alone on the same warm server with nothing "
                    f"training: {_f(d['alone_median_s'], 2)} s (median of the rounds)"
                )
        if "cli" in entry:
            c = entry["cli"]
            on = entry.get("measured_on", {}).get("cli")
            lines += [
                "",
                f"### 7. The command line (median of {c['repeats']} fresh processes)"
                + (f" ({on['cpu']}, {on['cores']} cores)" if on else ""),
                "",
                "| `python -m portrait_core predict FILE` | seconds | target |",
                "|---|---|---|",
                f"| a text file (one line on stderr, exit 2, TensorFlow never imported) | "
                f"{_f(c['not_an_image_s'], 2)} (worst {_f(c['not_an_image_worst_s'], 2)}) | "
                f"< {_f(c['target_not_an_image_s'], 0)} {_check(c['not_an_image_worst_s'] < c['target_not_an_image_s'])} |",
                f"| a 1024x768 photo (imports TensorFlow, loads the default model) | "
                f"{_f(c['photo_s'], 2)} | |",
                "",
                f"The photo takes {_f(c['photo_over_not_an_image'])}x as long: the bad file is "
                "answered before TensorFlow is imported.",
            ]
        if "batch" in entry:
            b = entry["batch"]
            on = entry.get("measured_on", {}).get("batch")
            lines += [
                "",
                f"### 7b. Many pictures at once: a folder of {b['pictures']:,} into a CSV"
                + (f" ({on['cpu']}, {on['cores']} cores)" if on else ""),
                "",
                f"The default model ({b['model']} at {b['image_size']} px), "
                f"`python -m portrait_core predict FOLDER --csv` (tf.data decoding in parallel, "
                f"batches of {b['batch']}), against one picture at a time.",
                "",
                "| how | pictures/s | the CSV is faster by |",
                "|---|---|---|",
                f"| `predict FOLDER --csv` (median of {b['repeats']}) | "
                f"{_f(b['csv_pictures_per_s'])} | |",
                f"| `Predictor.predict` per picture, model loaded (median of {b['single_n']}) | "
                f"{_f(b['one_at_a_time_pictures_per_s'])} | {_f(b['csv_over_one_at_a_time'])}x |",
                f"| `python -m portrait_core predict FILE` per picture (median of {b['cli_n']}) | "
                f"{_f(b['one_process_each_pictures_per_s'], 2)} | "
                f"{_f(b['csv_over_one_process_each'], 0)}x |",
            ]
        if "realfaces" in entry:
            lines += real_faces_markdown(entry["realfaces"], entry.get("measured_on", {}))
        if "faithfulness" in entry:
            lines += faithfulness_markdown(entry["faithfulness"], entry.get("measured_on", {}))
        if "export" in entry:
            lines += export_markdown(entry["export"], entry.get("measured_on", {}))
        if "frozen" in entry:
            lines += frozen_markdown(entry["frozen"], entry.get("measured_on", {}))
    if gpu:
        lines += gpu_markdown(gpu, results.get("cpu", {}).get("train"))
    return "\n".join(lines) + "\n"


def load(name: str) -> dict | None:
    path = HERE / name
    return json.loads(path.read_text()) if path.exists() else None


def write_readme() -> None:
    (HERE / "README.md").write_text(markdown(load("results.json") or {}, load("results_gpu.json")))


if __name__ == "__main__":
    write_readme()
