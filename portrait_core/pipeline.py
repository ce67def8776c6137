"""The tf.data input pipeline: decode -> letterbox -> cache (uint8) -> shuffle -> batch -> augment.

Pictures are decoded by `images.load_letterboxed`, the very function prediction uses, so train
and predict see the same pixels. Decoded pictures are cached as uint8 (in memory when small, in
a cache file when not), so memory stays flat as the data set grows and the data set is never held
as a float32 array. Augmentation runs on training batches only; val and test never see it.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from portrait_core.images import load_letterboxed
from portrait_core.schema import ATTRIBUTES, age_position

AUTOTUNE = tf.data.AUTOTUNE

# The study's augmentation (Keras ImageDataGenerator): rotation 15 degrees, width/height shift
# 0.15, zoom 0.15, horizontal flip. Filled with black, like the letterbox padding around it.
ROTATION_DEGREES = 15
SHIFT = 0.15
ZOOM = 0.15
# The "photo" augmentation, for real photos as people upload them: the study's geometry
# (milder rotation, zoom in and out), colour and light, and the losses a photo suffers on its way
# (blur, a lower resolution blown up, JPEG artefacts), each on a share of the pictures. The
# robustness evaluation (robustness.py) degrades test pictures in the same kinds of ways, at
# fixed strengths.
PHOTO = {
    "rotation_degrees": 10,
    # what rotations, shifts and zooming out fill the corners with: the picture mirrored, not
    # black wedges that no real test picture has (README "Real faces")
    "fill_mode": "reflect",
    "shift": 0.08,
    "zoom": (-0.2, 0.15),  # negative: zoom in, a random crop of the face
    "brightness": 0.3,  # up to +-30 % of the 0..255 range
    "contrast": 0.3,
    "saturation": (0.3, 0.7),  # Keras' scale: 0.5 keeps the colours
    "blur_share": 0.25,  # of the pictures: a Gaussian blur,
    "blur_sigma": (0.001, 0.02),  # of this standard deviation, in picture widths (2.6 px at 128)
    "low_resolution_share": 0.3,  # of the pictures: down-scaled by a factor drawn from
    "low_resolution_factor": (1.5, 4.0),  # this range, then blown up again
    "jpeg_share": 0.3,  # of the pictures: JPEG-compressed at quality 15-75
}
PHOTO_LOSS_SHARES = ("blur_share", "low_resolution_share", "jpeg_share")


def photo_settings(degrade_share: float | None = None) -> dict:
    """PHOTO, with one share for each of its losses (blur, lower resolution, JPEG) where given:
    a run's `degrade_share` (TrainConfig), heavier for a model that must stand degraded pictures
    (the synthetic default model, Makefile default-model), without changing the recipe's own."""
    if degrade_share is None:
        return dict(PHOTO)
    return {**PHOTO, **dict.fromkeys(PHOTO_LOSS_SHARES, float(degrade_share))}


# Decoded uint8 pictures are cached in memory up to 1 GiB for the whole run (all splits together,
# first come first served: train, then val); beyond that, in a cache file. The test split is read
# once, at the end, so it is never cached.
MEMORY_CACHE_LIMIT = 1 << 30
SHUFFLE_MEMORY = 256 << 20  # the shuffle buffer holds decoded pictures: cap it at 256 MiB
# tf.data's AUTOTUNE may buffer up to half the machine's RAM in prefetch and parallel-map
# buffers (measured: 9.7 GB peak for 5,000 pictures at 224 px); cap what it may hold.
AUTOTUNE_RAM_BUDGET = 512 << 20
MAX_CLASS_WEIGHT = 25.0  # keeps a 0.5 % class from dominating the loss (n/k/n_c would be 40)


@dataclass
class SplitData:
    """One split's picture paths and class indices per attribute (-1 = label missing)."""

    paths: np.ndarray
    codes: dict[str, np.ndarray]
    # Ordered attributes' labels as positions between their classes, for soft targets from
    # exact ages (schema.age_position; -1 = missing). Where absent: the middle of the class.
    positions: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)


def class_weights(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class loss weights n / (k * n_c) over the labelled rows, capped at MAX_CLASS_WEIGHT."""
    present = codes[codes >= 0]
    counts = np.bincount(present, minlength=n_classes).astype(np.float64)
    weights = np.ones(n_classes)
    seen = counts > 0
    weights[seen] = len(present) / (seen.sum() * counts[seen])
    return np.minimum(weights, MAX_CLASS_WEIGHT).astype(np.float32)


def targets(
    data: SplitData, weights: dict[str, np.ndarray] | None, positions: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Labels (-1 = missing, ignored by the loss) and per-head sample weights (0 where missing).

    positions: ordered attributes' labels as float positions between the classes (SplitData's
    positions, else each class's middle), for MaskedSparseCrossentropy(position_spread)."""
    y, w = {}, {}
    for attr, codes in data.codes.items():
        present = codes >= 0
        y[attr] = codes.astype(np.int32)
        if positions and ATTRIBUTES[attr].ordinal:
            middle = np.where(present, codes + 0.5, -1.0)
            y[attr] = data.positions.get(attr, middle).astype(np.float32)
        per_class = weights[attr] if weights else np.ones(ATTRIBUTES[attr].n_classes, np.float32)
        w[attr] = np.where(present, per_class[np.maximum(codes, 0)], 0.0).astype(np.float32)
    return y, w


def labelled_mean_weights(x, y: dict, w: dict):
    """One global batch's per-head sample weights, scaled so each head's loss is its labelled mean.

    w is 0 where a label is missing. Keras divides the weighted loss sum by the replica's batch
    size and by the replicas (sum over batch size); weights times (batch / labelled pictures in
    the batch) make the sum over replicas sum(loss * w) / labelled, the step one device takes,
    however the missing labels fall between the replicas. Mapped on the batch before a strategy
    splits it (see training/metrics.py's MaskedSparseCrossentropy).
    """
    scaled = {}
    for attr, labels in y.items():
        labelled = tf.reduce_sum(tf.cast(labels >= 0, tf.float32))
        batch = tf.cast(tf.shape(labels)[0], tf.float32)
        scaled[attr] = w[attr] * tf.math.divide_no_nan(batch, labelled)
    return x, y, scaled


def _blur(x, sigma_share, largest: float = PHOTO["blur_sigma"][1]):
    """A Gaussian blur of a (batch, h, w, c) float batch; sigma a scalar tensor, in widths
    (at most `largest`, which sizes the kernel).

    Separable, with the borders reflected: Keras' RandomGaussianBlur pads with zeros, which
    drew a dark frame around every blurred picture (a uniform grey picture came out with
    borders 37 levels darker), and it has a fixed 3 x 3 kernel, too small for a sigma above
    about 1 px. The kernel here spans 3 sigmas of the largest sigma asked for.
    """
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    radius = max(1, math.ceil(3 * largest * max(height, width)))
    sigma = tf.maximum(sigma_share * float(max(height, width)), 1e-3)
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(taps / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    column = tf.tile(tf.reshape(kernel, (-1, 1, 1, 1)), (1, 1, channels, 1))
    row = tf.reshape(column, (1, -1, channels, 1))
    x = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    x = tf.nn.depthwise_conv2d(x, column, (1, 1, 1, 1), "VALID")
    return tf.nn.depthwise_conv2d(x, row, (1, 1, 1, 1), "VALID")


def _photo_losses(seed: int, p: dict):
    """A batch function: blur, lower resolution and JPEG artefacts, each on a share of the
    pictures, rolled picture by picture (the strengths, one per batch).

    Rolled per picture, not per batch: with a whole batch degraded together, batch
    normalisation's training-time statistics came from degraded pictures alone and hid the shift
    that its running statistics expose at test time (README "Real faces" measures the two).
    p: photo_settings().
    """

    def blur(x):
        sigma = tf.random.uniform([], *p["blur_sigma"], seed=seed + 3)
        return _blur(x, sigma, p["blur_sigma"][1])

    def lower_resolution(x):
        size = tf.shape(x)[1:3]
        factor = tf.random.uniform([], *p["low_resolution_factor"], seed=seed)
        small = tf.maximum(tf.cast(tf.cast(size, tf.float32) / factor, tf.int32), 8)
        down = tf.image.resize(x, small, method="area")
        return tf.image.resize(down, size, method="bilinear")

    def jpeg(x, chosen):
        def one(image):
            quality = tf.random.uniform([], 15, 76, dtype=tf.int32, seed=seed + 2)
            return tf.image.adjust_jpeg_quality(image / 255.0, quality) * 255.0

        where = tf.where(chosen)  # only the chosen pictures pay for the encoding
        return tf.tensor_scatter_nd_update(x, where, tf.map_fn(one, tf.gather_nd(x, where)))

    def whole(degrade):  # degrade the whole batch, keep it for the chosen pictures
        return lambda x, chosen: tf.where(chosen[:, None, None, None], degrade(x), x)

    def some(chosen, degrade, x):  # nothing to pay when no picture is chosen
        return tf.cond(tf.reduce_any(chosen), lambda: degrade(x, chosen), lambda: x)

    def apply(x):
        roll = tf.random.uniform([tf.shape(x)[0], 3], seed=seed + 1)
        x = some(roll[:, 2] < p["blur_share"], whole(blur), x)
        x = some(roll[:, 0] < p["low_resolution_share"], whole(lower_resolution), x)
        x = some(roll[:, 1] < p["jpeg_share"], jpeg, x)
        return tf.clip_by_value(x, 0.0, 255.0)

    return apply


def augmenter(seed: int, kind: str = "study", degrade_share: float | None = None):
    """The study's augmentation ("study") or the one for real photos ("photo", see PHOTO), as
    Keras preprocessing layers and tf ops, run inside tf.data on float batches (0..255).
    degrade_share: "photo" only, the share of pictures each loss falls on (photo_settings)."""
    import keras

    if kind == "photo":
        p = photo_settings(degrade_share)
        layers = keras.Sequential(
            [
                keras.layers.RandomRotation(
                    p["rotation_degrees"] / 360, fill_mode=p["fill_mode"], seed=seed
                ),
                keras.layers.RandomTranslation(
                    p["shift"], p["shift"], fill_mode=p["fill_mode"], seed=seed + 1
                ),
                keras.layers.RandomZoom(p["zoom"], fill_mode=p["fill_mode"], seed=seed + 2),
                keras.layers.RandomFlip("horizontal", seed=seed + 3),
                keras.layers.RandomBrightness(p["brightness"], (0, 255), seed=seed + 4),
                keras.layers.RandomContrast(p["contrast"], (0, 255), seed=seed + 5),
                keras.layers.RandomSaturation(p["saturation"], (0, 255), seed=seed + 6),
            ],
            name="augment_photo",
        )
        losses = _photo_losses(seed + 8, p)
        return lambda x, training=True: losses(layers(x, training=training))
    if kind != "study":
        raise ValueError(f"augmentation must be 'study' or 'photo', not {kind!r}")
    return keras.Sequential(
        [
            keras.layers.RandomRotation(ROTATION_DEGREES / 360, fill_mode="constant", seed=seed),
            keras.layers.RandomTranslation(SHIFT, SHIFT, fill_mode="constant", seed=seed + 1),
            keras.layers.RandomZoom(ZOOM, fill_mode="constant", seed=seed + 2),
            keras.layers.RandomFlip("horizontal", seed=seed + 3),
        ],
        name="augment",
    )


def _bounded(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.autotune.ram_budget = AUTOTUNE_RAM_BUDGET
    # Under MultiWorkerMirroredStrategy each worker keeps its share of every global batch (the
    # first half to worker 0, ...), as MirroredStrategy splits one. Sharding by FILE needs a
    # dataset read from files (TFRecord); ours starts from path lists in memory, so say DATA
    # rather than let AUTO fall back to it with a warning. Each worker reads every picture,
    # shuffled by the same seed, so the shares add up to the global batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _decode(size: int):
    def load(path: bytes) -> np.ndarray:
        return load_letterboxed(path.decode(), size)

    def fn(path, y, w):
        image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        image.set_shape((size, size, 3))
        return image, y, w

    return fn


def split_data(table, splits, attributes) -> dict[str, SplitData]:
    """The table cut into train/val/test SplitData (splits: a Series aligned with the table)."""
    from portrait_core.data.table import label_codes

    parts = {}
    for name in ("train", "val", "test"):
        rows = table[(splits == name).to_numpy()]
        parts[name] = SplitData(
            paths=rows["path"].to_numpy(),
            codes={a: label_codes(rows, a) for a in attributes},
            positions={"age": age_positions(rows)} if "age" in attributes else {},
        )
    return parts


def age_positions(rows) -> np.ndarray:
    """Each row's place among the age bands (schema.age_position) where its exact age is
    known, its band's middle where only the band is, -1 where neither (float32)."""
    from portrait_core.data.table import AGE_YEARS, label_codes

    codes = label_codes(rows, "age")
    positions = np.where(codes >= 0, codes + 0.5, -1.0)
    if AGE_YEARS in rows:
        years = rows[AGE_YEARS].to_numpy(dtype=np.float64)
        for i in np.flatnonzero((codes >= 0) & ~np.isnan(years)):
            positions[i] = age_position(years[i])
    return positions.astype(np.float32)


@dataclass
class InputPipeline:
    """Builds the datasets of one training run. Call `mean_image()` first: it fills the cache."""

    train: SplitData
    val: SplitData
    test: SplitData
    image_size: int = 128
    batch_size: int = 32
    seed: int = 0
    augment: bool = True
    augmentation: str = "study"  # "study" or "photo" (augmenter)
    degrade_share: float | None = None  # "photo": each loss's share of the pictures (augmenter)
    balance: tuple[str, int] | None = None  # (attribute, target count per class) to oversample
    weight_classes: bool = True
    positions: bool = False  # ordered attributes' labels as positions (targets())
    cache_dir: Path | None = None  # where file caches go; a temp folder when None
    # Whole training batches only (a distribution strategy splits each batch between replicas,
    # and TensorFlow's MirroredStrategy failed here on a last batch split unevenly, 22 + 21)
    drop_remainder: bool = False
    _cached: dict = field(default_factory=dict, repr=False)
    _tmp: str | None = field(default=None, repr=False)
    _memory_cached: int = field(default=0, repr=False)  # bytes of pictures cached in memory

    @property
    def picture_bytes(self) -> int:
        return self.image_size * self.image_size * 3

    def _class_weights(self) -> dict[str, np.ndarray] | None:
        if not self.weight_classes:
            return None
        weights = {
            a: class_weights(c, ATTRIBUTES[a].n_classes) for a, c in self.train.codes.items()
        }
        if self.balance:  # oversampling already evens that attribute out
            weights[self.balance[0]] = np.ones_like(weights[self.balance[0]])
        return weights

    def _cache(self, ds: tf.data.Dataset, n: int, name: str) -> tf.data.Dataset:
        size = n * self.picture_bytes
        if self._memory_cached + size <= MEMORY_CACHE_LIMIT:
            self._memory_cached += size
            return ds.cache()
        if self.cache_dir is not None:
            folder = Path(self.cache_dir)
            folder.mkdir(parents=True, exist_ok=True)
        else:
            self._tmp = self._tmp or tempfile.mkdtemp(prefix="portrait_lab_cache_")
            folder = Path(self._tmp)
        return ds.cache(str(folder / f"{name}-{os.getpid()}"))

    def decoded(
        self, split: str, subset: np.ndarray | None = None, name: str = ""
    ) -> tf.data.Dataset:
        """(uint8 picture, labels, weights) per record of a split; train and val are cached."""
        key = (split, name)
        if key in self._cached:
            return self._cached[key]
        data: SplitData = getattr(self, split)
        weights = self._class_weights() if split == "train" else None
        y, w = targets(data, weights, self.positions)
        idx = np.arange(len(data)) if subset is None else subset
        if split == "train":  # a random cache order, so a bounded shuffle buffer mixes well
            idx = np.random.default_rng(self.seed).permutation(idx)
        ds = tf.data.Dataset.from_tensor_slices(
            (
                data.paths[idx].astype(str),
                {a: v[idx] for a, v in y.items()},
                {a: v[idx] for a, v in w.items()},
            )
        )
        ds = ds.map(_decode(self.image_size), num_parallel_calls=AUTOTUNE, deterministic=True)
        if split != "test":  # the test split is read once, when the run ends
            ds = self._cache(ds, len(idx), f"{split}{name}")
        self._cached[key] = ds
        return ds

    def _class_subsets(self) -> list[tuple[str, np.ndarray, int]]:
        """For balancing: (name, indices, count per epoch) per class, plus unlabelled rows."""
        attr, target = self.balance
        codes = self.train.codes[attr]
        groups = []
        for k, cls in enumerate(ATTRIBUTES[attr].classes):
            idx = np.flatnonzero(codes == k)
            if len(idx):
                groups.append((f"-{attr}-{cls}", idx, max(len(idx), target)))
        missing = np.flatnonzero(codes < 0)
        if len(missing):
            groups.append((f"-{attr}-missing", missing, len(missing)))
        return groups

    def mean_image(self) -> np.ndarray:
        """Per-pixel mean of the training split's letterboxed pictures (float32 HxWx3, 0..255).

        One streaming pass in float64; it also fills the training cache, so epoch 1 reads it.
        """
        total = np.zeros((self.image_size, self.image_size, 3), np.float64)
        count = 0
        parts = (
            [self.decoded("train", idx, name) for name, idx, _ in self._class_subsets()]
            if self.balance
            else [self.decoded("train")]
        )
        for ds in parts:
            for images, _, _ in _bounded(ds.batch(256)).as_numpy_iterator():
                total += images.sum(axis=0, dtype=np.float64)
                count += len(images)
        if count == 0:
            raise ValueError("the training split is empty: the data set has too few pictures")
        return (total / count).astype(np.float32)

    def steps_per_epoch(self) -> int:
        if self.balance:
            n = sum(c for _, _, c in self._class_subsets())
        else:
            n = len(self.train)
        if self.drop_remainder:
            return max(1, n // self.batch_size)
        return max(1, math.ceil(n / self.batch_size))

    def train_dataset(self) -> tf.data.Dataset:
        if self.balance:
            groups = self._class_subsets()
            parts = [
                self.decoded("train", idx, name)
                .repeat()
                .shuffle(min(len(idx), 1024), seed=self.seed)
                for name, idx, _ in groups
            ]
            counts = np.array([c for _, _, c in groups], np.float64)
            ds = tf.data.Dataset.sample_from_datasets(
                parts, weights=list(counts / counts.sum()), seed=self.seed
            ).take(int(counts.sum()))
        else:
            buffer = max(1, min(len(self.train), SHUFFLE_MEMORY // self.picture_bytes))
            ds = self.decoded("train").shuffle(
                buffer, seed=self.seed, reshuffle_each_iteration=True
            )
        ds = ds.batch(self.batch_size, drop_remainder=self.drop_remainder)
        ds = ds.map(labelled_mean_weights)
        if self.augment:
            layers = augmenter(self.seed, self.augmentation, self.degrade_share)
            ds = ds.map(
                lambda x, y, w: (layers(tf.cast(x, tf.float32), training=True), y, w),
                num_parallel_calls=AUTOTUNE,
            )
        else:
            ds = ds.map(lambda x, y, w: (tf.cast(x, tf.float32), y, w))
        return _bounded(ds.prefetch(AUTOTUNE))

    def eval_dataset(self, split: str, whole_batches: bool = False) -> tf.data.Dataset:
        """val or test: decoded, batched, in file order, never augmented.

        whole_batches: leave out the last partial batch (validation under a distribution
        strategy: the same few pictures every epoch, since the order is fixed).
        """
        if split not in ("val", "test"):
            raise ValueError(f"eval_dataset takes 'val' or 'test', not {split!r}")
        ds = self.decoded(split).batch(self.batch_size, drop_remainder=whole_batches)
        ds = ds.map(labelled_mean_weights)
        return _bounded(ds.map(lambda x, y, w: (tf.cast(x, tf.float32), y, w)).prefetch(AUTOTUNE))

    def close(self) -> None:
        """Remove file caches written to a temporary folder."""
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
