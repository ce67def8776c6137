"""TrainConfig: everything a training run needs, one dataclass filled by the CLI and the Train page.

Defaults live here, each with its reason. A preset ("default" or "study", per model, in the model
registry) fills the model's settings first; values the user gives explicitly win over the preset.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from portrait_core.paths import RUNS
from portrait_core.schema import ATTRIBUTE_KEYS, parse_attributes

DISTRIBUTE = ("none", "mirrored", "multiworker")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("plateau", "cosine")
AUGMENTATIONS = ("study", "photo")


@dataclass
class TrainConfig:
    data: str  # data folder (AI Hub, CSV manifest, UTKFace or CelebA)
    model: str = "cnn_custom"  # a name in the model registry
    attributes: tuple[str, ...] = (
        ATTRIBUTE_KEYS  # one multi-output model; pass one for the study's set-up
    )
    preset: str = "default"  # "default" (tuned for a CPU) or "study" (the 2022 hyper-parameters)
    image_size: int = (
        128  # the study used 224; 128 trains ~3x faster on a CPU with little loss here
    )
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3  # the optimizer's (peak) learning rate
    # "adam" (the study), or "adamw": Adam with decoupled weight decay (Loshchilov & Hutter 2019)
    optimizer: str = "adam"
    weight_decay: float = 0.0  # adamw's decay per step, times the learning rate
    # "plateau": cut the rate by lr_factor when val_loss stalls (the study); "cosine": warm up
    # for warmup_epochs, then follow a cosine from lr to 0 over the remaining epochs
    schedule: str = "plateau"
    warmup_epochs: int = 0  # at most epochs - 1 are used: a run of 2 epochs warms up for 1
    label_smoothing: float = 0.0  # share of each target spread over the other classes
    # ordered attributes (age bands) only: soft targets over the neighbouring classes, a
    # Gaussian of this width in classes (SORD; metrics.ordinal_targets); 0 = the label alone
    ordinal_spread: float = 0.0
    # age only: soft targets from each picture's exact age where the data gives one (UTKFace's
    # names, AI Hub's records, a manifest's years), a Gaussian of this many years spread over
    # the bands it overlaps (metrics.position_targets); 0 = the band alone
    age_spread: float = 0.0
    early_stop_patience: int = 3  # epochs without val_loss improvement (the study: 3)
    lr_patience: int = 1  # ReduceLROnPlateau patience (the study: 1)
    lr_factor: float = 0.2  # ReduceLROnPlateau factor (the study: 0.2)
    options: dict = field(default_factory=dict)  # builder options: pooling, weights, unfreeze, ...
    balance: str | None = (
        None  # "hairstyle" or "hairstyle:2000": oversample that attribute's classes
    )
    class_weights: bool = True  # per-head sample weights against class imbalance
    augment: bool = True  # augmentation on training batches
    # "study": rotation, shifts, zoom, flips (the study's); "photo": also random crops, colour,
    # blur, lower resolution and JPEG artefacts, as uploaded photos have (pipeline.py)
    augmentation: str = "study"
    # "photo" only: the share of the training pictures each of its losses (blur, a lower
    # resolution, JPEG) falls on, rolled apart; None = the recipe's own (pipeline.PHOTO)
    degrade_share: float | None = None
    seed: int = 0  # split, shuffling, augmentation and weight initialisation
    split: tuple[float, float, float] = (0.70, 0.15, 0.15)
    max_steps_per_epoch: int | None = None  # cap for quick trials and tests; None = whole split
    # a time budget for fit: no epoch starts that would likely end past it (the last epoch's
    # length is the guess); the best epoch so far is kept. None = no limit
    max_minutes: float | None = None
    # "none", or "mirrored": TensorFlow's MirroredStrategy, one model copy per local GPU (the
    # batch is split between them; batch_size is the global batch); "multiworker": the same
    # across the machines TF_CONFIG lists (MultiWorkerMirroredStrategy, training/workers.py)
    distribute: str = "none"
    # crop every picture to its face first (MTCNN; for data sets of uncropped photos): the crops
    # are made once and cached beside the data's split file (data/face_crops.py)
    faces: bool = False
    out: str = str(RUNS)  # where run folders go

    def __post_init__(self) -> None:
        self.attributes = parse_attributes(self.attributes)
        self.split = tuple(float(f) for f in self.split)
        for name in ("image_size", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a whole number above 0, not {value!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise ValueError(f"lr must be between 0 and 1, not {self.lr!r}")
        if self.preset not in ("default", "study"):
            raise ValueError(f"preset must be 'default' or 'study', not {self.preset!r}")
        if self.balance:
            self.balance_target()  # validates
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("augmentation", AUGMENTATIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}"
                )
        if not (0 <= self.label_smoothing < 1):
            raise ValueError(f"label_smoothing must be in [0, 1), not {self.label_smoothing!r}")
        ranged = [("ordinal_spread", 5, ""), ("age_spread", 20, " years")]
        if self.degrade_share is not None:
            ranged.append(("degrade_share", 1, ""))
        for name, top, unit in ranged:
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, (int, float)) and 0 <= value <= top
            ):
                raise ValueError(f"{name} must be in [0, {top}]{unit}, not {value!r}")
        if self.age_spread and self.ordinal_spread:
            raise ValueError(
                "age_spread and ordinal_spread both soften the age targets: give one, not both"
            )
        if self.degrade_share is not None and (not self.augment or self.augmentation != "photo"):
            raise ValueError(
                "degrade_share sets the photo augmentation's blur, lower resolution and "
                "JPEG: it needs augmentation photo (and augment on)"
            )
        if not (0 <= self.weight_decay < 1):
            raise ValueError(f"weight_decay must be in [0, 1), not {self.weight_decay!r}")
        if self.max_minutes is not None and not (
            isinstance(self.max_minutes, (int, float)) and self.max_minutes > 0
        ):
            raise ValueError(f"max_minutes must be above 0, not {self.max_minutes!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be 0 or more, not {self.warmup_epochs!r}")
        if self.distribute not in DISTRIBUTE:
            raise ValueError(
                f"distribute must be one of {', '.join(DISTRIBUTE)}, not {self.distribute!r}"
            )
        if self.max_minutes is not None and self.distribute == "multiworker":
            # each worker would time its own epochs: one could stop (or end its schedule) an
            # epoch before another, which would then wait for it in vain
            raise ValueError(
                "max_minutes cannot be used with distribute multiworker: the workers would "
                "each judge the time budget, and could stop at different epochs"
            )

    def balance_target(self) -> tuple[str, int | None] | None:
        """'hairstyle:2000' -> ('hairstyle', 2000); 'hairstyle' -> ('hairstyle', None = largest class)."""
        if not self.balance:
            return None
        attr, _, count = self.balance.partition(":")
        if attr not in self.attributes:
            raise ValueError(
                f"balance attribute {attr!r} is not one of the attributes trained: {', '.join(self.attributes)}"
            )
        if count and (not count.isdigit() or int(count) <= 0):
            raise ValueError(f"balance target {count!r} must be a whole number above 0")
        return attr, int(count) if count else None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["attributes"] = list(self.attributes)
        d["split"] = list(self.split)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Strict: an unknown key or a wrong type is an error naming it."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(
                f"unknown config key {', '.join(unknown)}; known keys: {', '.join(known)}"
            )
        for key, value in d.items():
            expected = _TYPES[key]
            if value is not None and not isinstance(value, expected):
                raise ValueError(f"config key {key} should be {_describe(expected)}, not {value!r}")
        return cls(**d)

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text())["train"])


_TYPES = {
    "data": str,
    "model": str,
    "attributes": (list, tuple, str),
    "preset": str,
    "image_size": int,
    "epochs": int,
    "batch_size": int,
    "lr": (float, int),
    "optimizer": str,
    "weight_decay": (float, int),
    "schedule": str,
    "warmup_epochs": int,
    "label_smoothing": (float, int),
    "ordinal_spread": (float, int),
    "age_spread": (float, int),
    "early_stop_patience": int,
    "lr_patience": int,
    "lr_factor": (float, int),
    "options": dict,
    "balance": str,
    "class_weights": bool,
    "augment": bool,
    "augmentation": str,
    "degrade_share": (float, int),
    "seed": int,
    "split": (list, tuple),
    "max_steps_per_epoch": int,
    "max_minutes": (float, int),
    "distribute": str,
    "faces": bool,
    "out": str,
}


def _describe(expected) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(t.__name__ for t in types)


def make_config(data: str, model: str, preset: str = "default", **given) -> TrainConfig:
    """A config from a model's preset, overridden by what the user gave (None = not given).

    Keras-free (the app's Train page calls it); an unknown model or option is an error naming
    the valid ones, raised before any run folder is made.
    """
    from portrait_core.models.catalog import check_options, get_info

    settings = dict(get_info(model).presets.get(preset, {}))
    options = {**settings.pop("options", {}), **(given.pop("options", None) or {})}
    check_options(model, options)
    settings.update({k: v for k, v in given.items() if v is not None})
    return TrainConfig(data=data, model=model, preset=preset, options=options, **settings)
