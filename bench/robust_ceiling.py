"""How well can any model of the default's size read pictures down-scaled x4? An upper-bound probe.

    .venv/bin/python bench/robust_ceiling.py [--size 64] [--epochs 20] [--data data/synthetic]
        [--heads gender,age]   (a data set without face shape and hairstyle, such as UTKFace)
        [--degradation jpeg_q20]   (another of robustness.DEGRADATIONS; downscale_x4 by default)

Issue 11 asks every degraded score to stay within 0.05 of the clean one. The shipped default
(small_resnet, 64 px) loses 0.38 of age-band and 0.25 of hairstyle balanced accuracy on pictures
down-scaled x4 and blown up again (robustness.downscale_x4, applied at the model's size: 16 px
left of 64). This probe asks whether the information is still there: it trains the same network
(the default's width, dropout, AdamW, cosine schedule and label smoothing) on the training split
with *every* picture degraded that way (flips the only other augmentation), and scores it on the
test split degraded the same way. A model that never sees a sharp picture is the best case for
degraded ones; what it cannot reach, a model that must also read sharp pictures at 0.05 from its
clean score cannot either, short of a better recipe or a larger input. Takes about 20 minutes on
2 cores (in-memory, 6,000 pictures). Prints one RESULT line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADS = ["gender", "age", "face_shape", "hairstyle"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "synthetic"))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--clean", action="store_true", help="no degradation (the control)")
    parser.add_argument("--heads", default=",".join(HEADS), help="comma-separated attributes")
    parser.add_argument("--degradation", default="downscale_x4", help="robustness.DEGRADATIONS")
    args = parser.parse_args()
    heads = args.heads.split(",")

    from PIL import Image
    from sklearn.metrics import balanced_accuracy_score

    from portrait_core.data.formats import load_dataset
    from portrait_core.data.split import load_or_make_split
    from portrait_core.data.table import label_codes
    from portrait_core.images import letterbox
    from portrait_core.robustness import DEGRADATIONS, degrade

    if args.degradation not in DEGRADATIONS:
        parser.error(f"--degradation must be one of {', '.join(DEGRADATIONS)}")

    data = load_dataset(args.data)
    splits, _ = load_or_make_split(data)
    part = splits.to_numpy()

    def picture(path) -> np.ndarray:
        square = letterbox(Image.open(path).convert("RGB"), args.size)
        return square if args.clean else degrade(args.degradation, square)

    x = np.stack([picture(p) for p in data.table["path"]]).astype(np.float32)
    y = {h: label_codes(data.table, h) for h in heads}  # -1: label missing
    train, test = part == "train", part == "test"
    x = (x - x[train].mean(axis=0)) / 255.0

    import keras

    from portrait_core.models import create_model
    from portrait_core.training.metrics import losses_and_metrics

    keras.utils.set_random_seed(0)
    model = create_model("small_resnet", args.size, heads, width=32, dropout=0.3)
    losses, metrics = losses_and_metrics(heads, 0.1)
    # every training picture and its mirror image, so each pass is two epochs
    xs = np.concatenate([x[train], x[train][:, :, ::-1]])
    ys = {h: np.concatenate([y[h][train], y[h][train]]) for h in heads}
    # missing labels weigh 0 (the loss ignores them, as training's masked loss does)
    ws = {h: (v >= 0).astype(np.float32) for h, v in ys.items()}
    passes = max(1, args.epochs // 2)
    steps = passes * int(np.ceil(len(xs) / 64))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=0.003, warmup_steps=max(1, steps // 20)
    )
    model.compile(keras.optimizers.AdamW(schedule, weight_decay=0.05), loss=losses,
                  metrics=metrics)  # fmt: skip
    start = time.time()
    model.fit(xs, ys, sample_weight=ws, batch_size=64, epochs=passes, verbose=2, shuffle=True)
    out = model.predict(x[test], verbose=0)
    scores = {}
    for h in heads:
        known = y[h][test] >= 0
        picked = out[h][known].argmax(axis=1)
        scores[h] = round(float(balanced_accuracy_score(y[h][test][known], picked)), 3)
    kind = "clean" if args.clean else args.degradation
    print("RESULT", kind, f"{args.size} px", f"{2 * passes} epochs", scores,
          f"{time.time() - start:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
