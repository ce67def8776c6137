"""Data-parallel training through TensorFlow's own distribution (`train --distribute mirrored`).

MirroredStrategy keeps one copy of the model per local GPU, splits each batch between them and
averages the gradients; `batch_size` is the global batch. Without a GPU it runs on the CPU, as
one replica, or as PORTRAIT_LAB_CPU_REPLICAS logical CPU devices: a way to try the distributed
code path on a laptop (it does not make a CPU faster).

`train --distribute multiworker`: MultiWorkerMirroredStrategy over the machines TF_CONFIG lists
(training/workers.py), one replica per worker (or per GPU of each worker), the batch split and
the gradients averaged across them as MirroredStrategy does on one machine.
"""

from __future__ import annotations

import contextlib
import os

CPU_REPLICAS_ENV = "PORTRAIT_LAB_CPU_REPLICAS"


def strategy_for(name: str):
    """(a function giving a fresh context to build or compile the model in, the replicas)."""
    if name == "none":
        return contextlib.nullcontext, 1
    if name == "multiworker":
        from portrait_core.training.workers import read_tf_config

        read_tf_config()  # a bad TF_CONFIG in one line, not TensorFlow's trace
        import tensorflow as tf

        # TensorFlow requires it before any other op: it starts this worker's collective server
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _reduce_leaf_by_leaf(strategy)
        return strategy.scope, int(strategy.num_replicas_in_sync)
    import tensorflow as tf  # "mirrored"

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        strategy = tf.distribute.MirroredStrategy()
    else:
        _split_cpu(int(os.environ.get(CPU_REPLICAS_ENV, "1") or 1))
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(cpus)
    return strategy.scope, int(strategy.num_replicas_in_sync)


def _reduce_leaf_by_leaf(strategy) -> None:
    """Make Keras 3.15's fit work under MultiWorkerMirroredStrategy (keras/src/backend/
    tensorflow/trainer.py), whose `reduce` takes one value at a time:

    - `_maybe_symbolic_build` reduces a whole (x, y, weights) batch at once to learn its shapes:
      it failed with "Attempt to convert a value (PerReplica...) to a Tensor";
    - `reduce_per_replica` reduces each step's logs, scalars, with axis=0: "Invalid reduction
      dimension 0 for input with 0 dimensions". A scalar is averaged across the replicas alone.

    Every worker makes the same collectives in the same order, as before.
    """
    import tensorflow as tf

    reduce = strategy.reduce

    def one(reduce_op, value, axis):
        local = strategy.experimental_local_results(value)[0]
        if axis is not None and getattr(local, "shape", None) is not None:
            axis = None if local.shape.rank == 0 else axis
        return reduce(reduce_op, value, axis=axis)

    def leaf_by_leaf(reduce_op, value, axis=None):
        return tf.nest.map_structure(lambda v: one(reduce_op, v, axis), value)

    strategy.reduce = leaf_by_leaf


def _split_cpu(n: int) -> None:
    import tensorflow as tf

    if n <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) == n:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError as exc:
        raise ValueError(
            f"{CPU_REPLICAS_ENV}={n} must be set before TensorFlow starts in this process"
        ) from exc
