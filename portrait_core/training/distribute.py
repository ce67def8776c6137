"""Data-parallel training through TensorFlow's own distribution (`train --distribute mirrored`).

MirroredStrategy keeps one copy of the model per local GPU, splits each batch between them and
averages the gradients; `batch_size` is the global batch. Without a GPU it runs on the CPU, as
one replica, or as PORTRAIT_LAB_CPU_REPLICAS logical CPU devices: a way to try the distributed
code path on a laptop (it does not make a CPU faster). Several machines would take
MultiWorkerMirroredStrategy with TF_CONFIG; that is not wired up yet.
"""

from __future__ import annotations

import contextlib
import os

CPU_REPLICAS_ENV = "PORTRAIT_LAB_CPU_REPLICAS"


def strategy_for(name: str):
    """(a function giving a fresh context to build or compile the model in, the replicas)."""
    if name == "none":
        return contextlib.nullcontext, 1
    import tensorflow as tf  # "mirrored", the one other name TrainConfig accepts

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        strategy = tf.distribute.MirroredStrategy()
    else:
        _split_cpu(int(os.environ.get(CPU_REPLICAS_ENV, "1") or 1))
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(cpus)
    return strategy.scope, int(strategy.num_replicas_in_sync)


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
