"""A small residual CNN for training from scratch on a CPU: the recipe for real portraits.

A stride-2 stem, then four stages of basic residual blocks (He et al. 2016) at 1/2, 1/4, 1/8 and
1/16 of the input, each block conv-BN-ReLU-conv-BN plus a (projected) shortcut, global average
pooling, dropout and a linear softmax head per attribute. Batch norm and the shortcuts let it
train fast from random weights (the study's CNN has neither); global pooling keeps it small and
makes its heads read *what* is in the face rather than *where* each pixel lies, which real,
unaligned photos need. At 96 px it costs about 0.14 GFLOP (multiply-adds) a picture, half of
the study's CNN at the same size. Grad-CAM reads the last stage's output, `block4`.
"""

from __future__ import annotations

import keras
from keras import layers

from portrait_core.models.registry import image_input, register_model, softmax_heads

BN_MOMENTUM = 0.9  # Keras' 0.99 lags behind on short runs: its moving statistics, used at
# validation, were still far from the batches' after a few hundred steps


def _conv_bn(x, filters: int, stride: int, name: str, relu: bool = True):
    x = layers.Conv2D(
        filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _block(x, filters: int, stride: int, name: str):
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(
            filters, 1, strides=stride, use_bias=False, name=f"{name}_proj_conv"
        )(x)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
    y = _conv_bn(x, filters, stride, f"{name}_a")
    y = _conv_bn(y, filters, 1, f"{name}_b", relu=False)
    return layers.ReLU(name=name)(layers.Add(name=f"{name}_add")([shortcut, y]))


MIN_WIDTH = 16


@register_model("small_resnet")  # description, CAM layer, presets: models/catalog.py
def build(image_size: int, attributes, width: int = 32, dropout: float = 0.3) -> keras.Model:
    # Below 12 channels TensorFlow 2.21's oneDNN kernels crash the process (a segfault, no
    # exception) computing the input gradients every explanation needs, on an AVX-512 Xeon;
    # training itself runs. Measured at 40 px: widths 4 and 8 crash, 12, 16 and 24 do not.
    if width < MIN_WIDTH:
        raise ValueError(
            f"width must be {MIN_WIDTH} or more, not {width!r} (narrower networks crash "
            "TensorFlow's CPU kernels when they are explained)"
        )
    inputs, x = image_input(image_size)
    x = _conv_bn(x, width, 2, "stem")
    for stage, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2), (8, 2)), start=1):
        x = _block(x, width * mult, stride, f"block{stage}")
    features = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        features = layers.Dropout(dropout, name="dropout")(features)
    return keras.Model(inputs, softmax_heads(features, attributes), name="small_resnet")
