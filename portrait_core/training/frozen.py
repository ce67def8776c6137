"""Frozen backbones at the speed of their heads: the frozen layers' output computed once.

The study's ResNet50 trains only its last 10 or 20 layers, yet every epoch ran the whole frozen
network again. Without augmentation the frozen part sees the same pictures every epoch, so its
output is the same too: compute it once per picture (the *features*, at the *cut*), keep it in
memory or in a file in the run's cache folder, and train only the *top*, a Keras model from the
cut to the heads made of the whole model's own layer objects. The whole model therefore holds the
trained weights, and it is the whole, flat model that is saved and explained.

The cut is a tensor every later layer depends on only through it (in ResNet50 a block output,
since a residual block reads its input twice): the last such boundary below the first trainable
layer. Where there is none, or something else rules the cache out, training runs as before and
config.json says why (`frozen_cache`).

The top still runs the layers it trains, forward and backward, so the cache can speed a step up
by at most the ratio of the two ways' arithmetic: `step_macs` counts it (ResNet50 at 128 px:
6.8x for --unfreeze 10, 3.7x for 20; bench/README.md sets the measured figures beside it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import tree

from portrait_core.pipeline import (
    AUTOTUNE,
    SHUFFLE_MEMORY,
    InputPipeline,
    _bounded,
    labelled_mean_weights,
)

# Features are float32, often larger than the picture (ResNet50 at 128 px: 4x4x2048, 128 KiB
# against 48 KiB of uint8 pixels). Up to this much per run stays in memory, beyond it a
# memory-mapped file in the run's cache folder (the page cache still keeps what fits). Stored as
# float16 they trained no faster (bench/README.md) and no longer bit for bit: kept float32.
FEATURE_MEMORY_LIMIT = 1 << 30
# XLA for the top pays back its compile (~8 s on the bench's 2 cores at 128 px) after about
# 11,600 pictures trained (--unfreeze 10; 6,500 for 20): 0.7-0.8 ms saved per picture and
# epoch. Runs planned shorter than this (training pictures x epochs) train op by op.
XLA_MIN_PICTURE_EPOCHS = 10_000
# Layers that draw random numbers when training: below a cut they would make the cached output
# differ from what training sees.
STOCHASTIC_LAYERS = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)


@dataclass(frozen=True)
class Cut:
    """Where a model splits into a frozen bottom and a trained top, or why it does not."""

    layer: str | None  # the layer whose output the top reads; None: no cache
    first_trainable: str | None  # the first layer (in graph order) with trainable weights
    reason: str  # what was decided, in words (config.json and the run's log)

    def describe(self) -> dict:
        return {
            "used": self.layer is not None,
            "cut_layer": self.layer,
            "first_trainable": self.first_trainable,
            "reason": self.reason,
        }


def _sources(model: keras.Model) -> tuple[dict[str, set[str]], dict[str, int]]:
    """In `model`'s own graph (a layer may also sit in others, e.g. a top made earlier): layer
    name -> the names of the layers whose outputs it reads, and -> how many times it is called."""
    sources: dict[str, set[str]] = {}
    calls: dict[str, int] = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            reads = {t._keras_history.operation.name for t in node.input_tensors}
            sources.setdefault(node.operation.name, set()).update(reads)
            calls[node.operation.name] = calls.get(node.operation.name, 0) + 1
    return sources, calls


def find_cut(model: keras.Model) -> Cut:
    """The last clean cut below the first trainable layer of a flat functional model."""
    layers = model.layers
    first = next((i for i, layer in enumerate(layers) if layer.trainable_weights), None)
    if first is None:
        return Cut(None, None, "no layer is trainable")
    name = layers[first].name
    if not any(not layer.trainable and layer.weights for layer in layers[:first]):
        return Cut(None, name, "nothing is frozen below the first trainable layer")
    index = {layer.name: i for i, layer in enumerate(layers)}
    sources, calls = _sources(model)
    # lowest[j]: the lowest layer index read by any layer after j
    lowest = [len(layers)] * len(layers)
    for j in range(len(layers) - 2, -1, -1):
        reads = sources.get(layers[j + 1].name, set())
        lowest[j] = min([lowest[j + 1], *(index[r] for r in reads)])
    for j in range(first - 1, 0, -1):
        layer = layers[j]
        if lowest[j] < j or calls.get(layer.name) != 1 or len(tree.flatten(layer.output)) != 1:
            continue
        random = [x.name for x in layers[: j + 1] if isinstance(x, STOCHASTIC_LAYERS)]
        if random:
            return Cut(None, name, f"random layers below the cut: {', '.join(random)}")
        return Cut(layer.name, name, f"features cached at {layer.name}'s output")
    return Cut(None, name, f"no layer below {name} is a clean cut (later layers read past it)")


def _layer_macs(layer, node) -> int:
    """Multiply-accumulates of one call of `layer` (a node of the graph), per picture.

    Dense and convolutions (plain, depthwise, separable, transposed): each kernel weight is used
    once per output position (per input position for a transposed convolution), so the count is
    positions x kernel size (H_out W_out k k C_in/groups C_out for Conv2D, in x out for Dense).
    Everything else (batch norm, activations, adds, pooling) is elementwise, a few operations per
    output value, and not counted: ResNet50 at 128 px has 8.6 M such values per picture against
    1,261 M MACs.
    """
    kernels = [
        getattr(layer, name, None) for name in ("kernel", "depthwise_kernel", "pointwise_kernel")
    ]
    kernels = [k for k in kernels if k is not None and len(k.shape) >= 2]
    if not kernels:
        return 0
    transposed = "Transpose" in type(layer).__name__
    tensor = (node.input_tensors if transposed else node.output_tensors)[0]
    positions = int(np.prod(tensor.shape[1:-1], dtype=np.int64))  # 1 for a Dense on a vector
    return positions * sum(int(np.prod(k.shape, dtype=np.int64)) for k in kernels)


@dataclass(frozen=True)
class StepMacs:
    """Multiply-accumulates per picture of one training step, and the bound they set.

    A step of the whole model runs every layer forward and, backward, the layers below which
    something is trained: a trainable kernel costs its forward MACs again for its own gradient,
    and a layer with trained weights anywhere upstream costs them again for its input's
    gradient (so the first trainable layer, above the frozen bottom, needs none). On cached
    features the backward pass is the same; only the frozen bottom's forward is gone.
    """

    forward_whole: int  # every layer, forward
    forward_top: int  # the layers above the cut, forward
    backward: int  # weight and input gradients (the same both ways)

    @property
    def whole(self) -> int:
        return self.forward_whole + self.backward

    @property
    def cached(self) -> int:
        return self.forward_top + self.backward

    @property
    def bound(self) -> float:
        """The largest step speed-up the cache can give at equal arithmetic speed."""
        return self.whole / self.cached

    def epoch_bound(self, train: int, val: int) -> float:
        """The same for an epoch: `train` pictures stepped, `val` pictures forward only."""
        return (train * self.whole + val * self.forward_whole) / (
            train * self.cached + val * self.forward_top
        )


def step_macs(model: keras.Model, cut: str) -> StepMacs:
    """Count `model`'s training-step MACs per picture, whole and on features cached at `cut`."""
    sources, _ = _sources(model)
    top: set[str] = set()  # the layers reading the cut's output, directly or not
    upstream: dict[str, bool] = {}  # name -> it, or a layer it reads from (at any remove), trains
    forward_whole = forward_top = backward = 0
    for depth in sorted(model._nodes_by_depth, reverse=True):  # inputs first
        for node in model._nodes_by_depth[depth]:
            layer = node.operation
            reads = sources.get(layer.name, set())
            if reads & (top | {cut}):
                top.add(layer.name)
            trained_above = any(upstream.get(r, False) for r in reads)
            trained = bool(layer.trainable_weights)
            upstream[layer.name] = upstream.get(layer.name, False) or trained or trained_above
            macs = _layer_macs(layer, node)
            forward_whole += macs
            forward_top += macs if layer.name in top else 0
            backward += macs * (trained + trained_above)
    return StepMacs(forward_whole, forward_top, backward)


def plan_cut(model: keras.Model, augment: bool, balance, replicas: int) -> Cut:
    """The cut for this run, or why training runs the whole model every epoch."""
    if augment:
        return Cut(None, None, "augmentation is on: every epoch sees different pictures")
    if balance:
        return Cut(None, None, "oversampling (balance) is on: not done on cached features yet")
    if replicas > 1:
        return Cut(None, None, "distributed training: not done on cached features yet")
    return find_cut(model)


class CachedTop(keras.Model):
    """The top (a functional model from the cut to the heads); compiled with XLA where `xla`.

    Keras leaves XLA off on a CPU-only machine ("auto"). For the top it pays per step: fused,
    its step took 0.8x the time of oneDNN's op-by-op step at 128 px (bench/README.md), mostly
    by merging the optimizer's and batch norm's elementwise passes. But its compile (one per
    batch shape: the full and the last batch, train and val) costs ~8 s once, and its stateless
    random numbers are not TensorFlow's CPU kernels' (other dropout masks): the run is the same
    training within noise, no longer the whole model's bit for bit. So fit_inputs asks for it
    only where the run is long enough to pay it back (`XLA_MIN_PICTURE_EPOCHS`). An explicit
    `jit_compile` wins; Keras itself turns XLA off (with a warning) for a layer it cannot compile.
    """

    xla = False  # fit_inputs decides per run

    def compile(self, *args, jit_compile=None, **kwargs):
        jit_compile = self.xla if jit_compile is None else jit_compile
        super().compile(*args, jit_compile=jit_compile, **kwargs)


def split_model(model: keras.Model, cut: str) -> tuple[keras.Model, keras.Model]:
    """(bottom: picture -> features, top: features -> heads), sharing `model`'s layers."""
    tensor = model.get_layer(cut).output
    bottom = keras.Model(model.inputs, tensor, name=f"{model.name}_bottom")
    top = CachedTop(tensor, model.output, name=f"{model.name}_top")
    return bottom, top


class FeatureCache:
    """The frozen part's output for the train and val splits, and datasets that read it.

    Features come in the pipeline's own decoded order, with its labels and class weights, and the
    training batches are shuffled with the same seed and buffer as the picture pipeline's, so
    the top sees the batches the whole model would have seen.
    """

    def __init__(self, model: keras.Model, cut: str, pipeline: InputPipeline, folder: Path):
        self.pipeline, self.folder = pipeline, Path(folder)
        self.bottom, self.top = split_model(model, cut)
        self.shape = tuple(self.bottom.output.shape[1:])
        self.features: dict[str, np.ndarray] = {}
        self.targets: dict[str, tuple[dict, dict]] = {}
        self.on_disk: dict[str, bool] = {}
        self.seconds = 0.0
        self._in_memory = 0

    def fill(self) -> float:
        """Run the frozen part once over train and val; returns the seconds it took."""
        start = time.time()
        for split in ("train", "val"):
            self._fill(split)
        self.seconds = time.time() - start
        return self.seconds

    def _fill(self, split: str) -> None:
        n = len(getattr(self.pipeline, split))
        size = n * int(np.prod(self.shape)) * 4
        if self._in_memory + size <= FEATURE_MEMORY_LIMIT:
            self._in_memory += size
            store = np.empty((n, *self.shape), np.float32)
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"features-{split}.f32"
            store = np.lib.format.open_memmap(path, "w+", np.float32, (n, *self.shape))
        self.on_disk[split] = isinstance(store, np.memmap)
        ys, ws, k = [], [], 0
        batches = self.pipeline.decoded(split).batch(self.pipeline.batch_size)
        for images, y, w in _bounded(batches).as_numpy_iterator():
            out = self.bottom.predict_on_batch(images.astype(np.float32))
            store[k : k + len(images)] = out
            k += len(images)
            ys.append(y)
            ws.append(w)
        self.features[split] = store
        self.targets[split] = tuple(
            {a: np.concatenate([p[a] for p in parts]) for a in parts[0]} for parts in (ys, ws)
        )

    def _gather(self, split: str):
        store, shape = self.features[split], self.shape

        def rows(idx: np.ndarray) -> np.ndarray:
            return np.asarray(store[idx], np.float32)

        def fn(idx, y, w):
            x = tf.numpy_function(rows, [idx], tf.float32, stateful=False)
            x.set_shape((None, *shape))
            return x, y, w

        return fn

    def _indices(self, split: str) -> tf.data.Dataset:
        y, w = self.targets[split]
        return tf.data.Dataset.from_tensor_slices((np.arange(len(self.features[split])), y, w))

    def train_dataset(self) -> tf.data.Dataset:
        p = self.pipeline
        # the picture pipeline's buffer, so the order is the same as without the cache
        buffer = max(1, min(len(p.train), SHUFFLE_MEMORY // p.picture_bytes))
        ds = self._indices("train").shuffle(buffer, seed=p.seed, reshuffle_each_iteration=True)
        ds = ds.batch(p.batch_size).map(labelled_mean_weights).map(self._gather("train"))
        return _bounded(ds.prefetch(AUTOTUNE))

    def val_dataset(self) -> tf.data.Dataset:
        ds = self._indices("val").batch(self.pipeline.batch_size)
        ds = ds.map(labelled_mean_weights).map(self._gather("val"))
        return _bounded(ds.prefetch(AUTOTUNE))

    def describe(self) -> dict:
        return {
            "feature_shape": list(self.shape),
            "on_disk": self.on_disk,
            "fill_seconds": round(self.seconds, 3),
        }


def fit_inputs(model: keras.Model, pipeline: InputPipeline, config, replicas: int, folder: Path):
    """(model to fit, train dataset, val dataset, what was decided for config.json).

    The whole model on the picture pipeline, or, where `plan_cut` finds a cut, its top on
    features cached in `folder` (filled here: one pass of the frozen part over train and val),
    compiled with XLA if the run plans at least `XLA_MIN_PICTURE_EPOCHS` (see CachedTop).
    """
    cut = plan_cut(model, config.augment, config.balance, replicas)
    print(f"frozen-layer cache: {cut.reason}", flush=True)
    if cut.layer is None:
        val = pipeline.eval_dataset("val", whole_batches=replicas > 1)
        return model, pipeline.train_dataset(), val, cut.describe()
    cache = FeatureCache(model, cut.layer, pipeline, folder)
    cache.fill()
    pictures = len(pipeline.train)
    if config.max_steps_per_epoch:
        pictures = min(pictures, config.max_steps_per_epoch * pipeline.batch_size)
    cache.top.xla = pictures * config.epochs >= XLA_MIN_PICTURE_EPOCHS
    described = {**cut.describe(), **cache.describe(), "xla": cache.top.xla}
    return cache.top, cache.train_dataset(), cache.val_dataset(), described
