"""What each architecture is, without building it: description, Grad-CAM layer, options, presets.

Keras-free, so the app's Train page and `make_config` read it without importing TensorFlow (10 s
or more). The builders in this folder's other files register against these names
(registry.py); tests/test_models.py checks that every entry has a builder and the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Explanation methods, the default first. HiResCAM leads: on heads that read a flattened
# feature map (the default cnn_custom) Grad-CAM's averaged gradients often cancel to an empty map
# (portrait_core/explain.py says how often).
CAM_METHODS = ("hirescam", "gradcam", "gradcam++", "scorecam", "saliency")
# The Train page's first choice: the recipe for real portraits (the README's "Real faces"). The
# shipped default model is a cnn_custom, which learns the synthetic montages well.
TRAIN_DEFAULT = "small_resnet"


# The study's CNN training: Adam(1e-3), batch 125, 30 epochs, EarlyStopping(val_loss, 3),
# ReduceLROnPlateau(0.2, 1). The study preset of cnn_custom, and of small_resnet to compare
# recipes on one network.
STUDY_TRAINING = {
    "batch_size": 125,
    "epochs": 30,
    "lr": 1e-3,
    "early_stop_patience": 3,
    "lr_patience": 1,
    "lr_factor": 0.2,
}


# What every model's default sweep searches (a model's own `space` adds to it or overrides it):
# the rate on a log scale (a factor of 10 matters, a step of 1e-4 does not), the batch, the
# picture size (64-128 px: the study's 224 makes a sweep of CPU trials take days) and whether
# augmentation helps at all on this data.
SWEEP_COMMON = {
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "batch_size": [16, 32, 64],
    "image_size": [64, 96, 128],
    "augment": [True, False],
}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    cam_layer: str | None  # the conv layer Grad-CAM reads; None where CAM does not apply
    options: tuple[str, ...] = ()  # builder keyword options this model understands
    presets: dict[str, dict] = field(default_factory=dict)  # "default", "study": training settings
    # the values a string option takes (its builder refuses others), so that a sweep's space is
    # checked before TensorFlow loads
    option_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # the sweep's default search space (portrait_core/sweeps/space.py reads it; a SPACE file
    # has the same shape): a list is a choice, {low, high[, log][, step]} a range, a scalar fixed
    space: dict[str, object] = field(default_factory=dict)

    @property
    def supports_cam(self) -> bool:
        return self.cam_layer is not None

    @property
    def explain_methods(self) -> tuple[str, ...]:
        return CAM_METHODS if self.supports_cam else ("saliency",)


CATALOG: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "cnn_custom",
            description="The study's 3-conv CNN (Conv64-Conv128-Conv256); Dense 32 heads in the "
            "study preset, linear heads by default.",
            cam_layer="conv3",
            options=("pooling", "batch_norm", "head_units"),
            presets={
                # The study's CNN as it trained it (the flattened conv block, no batch norm).
                "study": {**STUDY_TRAINING, "options": {"pooling": "flatten", "batch_norm": False}},
                # Measured here on the synthetic set at 64 px, four heads: with the study's
                # Dense(32) ReLU heads, lr 1e-3 (with or without batch norm) left some heads stuck
                # on one class (face_shape at chance after 5 epochs); linear heads on pooled conv
                # features learned every head (4 epochs: val accuracy gender 0.97, hairstyle
                # 0.92, face 0.80, age 0.71).
                "default": {
                    "batch_size": 32,
                    "epochs": 30,
                    "lr": 1e-3,
                    "early_stop_patience": 5,
                    "lr_patience": 2,
                    "lr_factor": 0.3,
                    "options": {"pooling": "pool_flatten", "batch_norm": False, "head_units": 0},
                },
            },
            option_values={"pooling": ("flatten", "pool_flatten", "gap")},
            # the study's open questions for this network: its head (Dense 32 or linear, on
            # which pooling) and its rate; 64-128 px keeps a trial to minutes on a CPU
            space={
                **SWEEP_COMMON,
                "pooling": ["flatten", "pool_flatten", "gap"],
                "head_units": [0, 32, 64],
            },
        ),
        ModelInfo(
            "small_resnet",
            description="A small residual CNN (batch norm, 4 stages, global pooling) made to "
            "train from scratch on a CPU: the recipe for real portraits.",
            cam_layer="block4",
            options=("width", "dropout"),
            presets={
                # The study's training settings on this network (Adam, batch 125, plateau
                # schedule, early stop after 3, the study's augmentation), to compare recipes.
                "study": {**STUDY_TRAINING, "options": {"width": 32, "dropout": 0.0}},
                # Real portraits on 2 CPU cores (measured on 6,000 UTKFace chips, gender and
                # age; README "Real faces"): AdamW with a warm-up and a cosine to 0, label
                # smoothing, the photo augmentation; early stopping off (the cosine needs its
                # whole course; the best epoch by val_loss is kept anyway). 64 px: 15 s an
                # epoch against 37 s at 96 px, so 40 epochs fit in 12 minutes (test gender 0.871,
                # age balanced 0.458; the study's settings on this network: 0.782 and 0.362).
                # Lighter regularisation (dropout 0.1, decay 0.01, smoothing 0.05) did worse in
                # the same time: 0.865 and 0.409. The photo augmentation's corners filled by
                # reflection rather than black: gender 0.889 against 0.860 beside it (one pair).
                "default": {
                    "image_size": 64,
                    "batch_size": 64,
                    "epochs": 40,
                    "lr": 3e-3,
                    "optimizer": "adamw",
                    "weight_decay": 0.05,
                    "schedule": "cosine",
                    "warmup_epochs": 2,
                    "label_smoothing": 0.1,
                    "augmentation": "photo",
                    "early_stop_patience": 40,
                    "options": {"width": 32, "dropout": 0.3},
                },
            },
            # around the real-faces recipe (AdamW, cosine, lr 3e-3 at 64 px): 96 px was 2.5x
            # slower an epoch, so it is the largest size tried
            space={
                **SWEEP_COMMON,
                "lr": {"low": 5e-4, "high": 1e-2, "log": True},
                "image_size": [64, 96],
                "dropout": {"low": 0.0, "high": 0.5},
            },
        ),
        ModelInfo(
            "mlp_custom",
            description="The study's MLP (Dense 512-256-128); explained by saliency only.",
            cam_layer=None,
            options=("dropout",),
            presets={
                # The study: Adam, batch 32, 20 epochs.
                "study": {"batch_size": 32, "epochs": 20, "lr": 1e-3, "options": {"dropout": 0.0}},
                "default": {
                    "batch_size": 32,
                    "epochs": 20,
                    "lr": 3e-4,
                    "options": {"dropout": 0.2},
                },
            },
            # its first Dense layer grows with the square of the side: small pictures only
            space={
                **SWEEP_COMMON,
                "lr": {"low": 1e-5, "high": 3e-3, "log": True},
                "image_size": [32, 48, 64],
                "dropout": {"low": 0.0, "high": 0.5},
            },
        ),
        ModelInfo(
            "resnet50",
            description="ResNet50, ImageNet weights where available, last N layers trained.",
            cam_layer="conv5_block3_out",
            options=("weights", "unfreeze", "pooling"),
            presets={
                # The study: ImageNet weights, last 10 layers trainable, head
                # Flatten-Dense256-Dropout0.5, Adam(1e-3), batch 125, EarlyStopping(val_loss, 5),
                # ReduceLROnPlateau.
                "study": {
                    "batch_size": 125,
                    "epochs": 30,
                    "lr": 1e-3,
                    "early_stop_patience": 5,
                    "lr_patience": 2,
                    "lr_factor": 0.2,
                    "options": {"weights": "imagenet", "unfreeze": 10, "pooling": "flatten"},
                },
                "default": {
                    "batch_size": 32,
                    "epochs": 15,
                    "lr": 1e-3,
                    "early_stop_patience": 4,
                    "options": {"weights": "imagenet", "unfreeze": 10, "pooling": "gap"},
                },
            },
            option_values={"pooling": ("flatten", "gap")},
            # fine-tuning ImageNet weights wants a lower rate than training from scratch; the
            # study tried the last 10 and 20 layers
            space={
                **SWEEP_COMMON,
                "lr": {"low": 1e-5, "high": 1e-3, "log": True},
                "batch_size": [16, 32],
                "image_size": [96, 128],
                "pooling": ["flatten", "gap"],
                "unfreeze": [10, 20, 40],
            },
        ),
        ModelInfo(
            "alexnet",
            description="AlexNet (5 conv + 3 dense, batch norm for LRN), widths scaled to the "
            "input.",
            cam_layer="conv5",
            options=("dropout",),
            presets={
                "study": {
                    "batch_size": 128,
                    "epochs": 30,
                    "lr": 1e-3,
                    "early_stop_patience": 3,
                    "lr_patience": 1,
                    "lr_factor": 0.2,
                    "options": {"dropout": 0.5},
                },
                "default": {
                    "batch_size": 64,
                    "epochs": 20,
                    "lr": 1e-3,
                    "options": {"dropout": 0.5},
                },
            },
            space={**SWEEP_COMMON, "dropout": {"low": 0.2, "high": 0.6}},
        ),
    )
}


def get_info(name: str) -> ModelInfo:
    if name not in CATALOG:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(CATALOG))}")
    return CATALOG[name]


def check_options(name: str, options) -> None:
    """An option the model does not understand is an error naming the ones it does."""
    info = get_info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise ValueError(
            f"model {name} has no option {', '.join(unknown)}; "
            f"its options are {', '.join(info.options) or 'none'}"
        )
