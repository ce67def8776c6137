"""Prediction and explanation from a run or model folder, and nothing else.

    from portrait_core import load_predictor
    p = load_predictor("artifacts/default")   # or a run folder, or a run id
    p.predict(image)                          # {attribute: {"label": str, "probs": {class: p},
                                              #              "calibrated": bool}}
    p.explain(image, method="gradcam")        # {attribute: float32 H x W in [0, 1]} on the photo

The folder's model.keras carries the zero-centring mean image; config.json says the input size,
the attributes and the label-schema version. A photo goes through `images.as_rgb` and
`images.letterbox`, the same code the training pipeline used. Where the folder has
calibration.json (runs trained since calibration came in), each head's probabilities are
temperature-scaled (calibration.py): the label stays the same, the confidence becomes honest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from portrait_core.calibration import apply_temperature, read_temperatures
from portrait_core.explain import METHODS, Explainer, check_method, crop_to_photo
from portrait_core.faces import Face, crop_face, framing_of
from portrait_core.faithfulness import most_faithful
from portrait_core.images import as_rgb, letterbox
from portrait_core.paths import PROJECT, RUNS
from portrait_core.schema import ATTRIBUTES, SCHEMA_VERSION
from portrait_core.training.runs import read_json


class ModelFolderError(ValueError):
    """A folder that cannot serve predictions; the message says why."""


def resolve_model_folder(path: str | Path) -> Path:
    """A run folder, a model folder, a run id, or a name under artifacts/ -> the folder."""
    candidates = [Path(path), RUNS / str(path), PROJECT / "artifacts" / str(path)]
    for folder in candidates:
        if (folder / "model.keras").is_file():
            return folder
    for folder in candidates:
        if folder.is_dir():
            raise ModelFolderError(
                f"{folder} holds no model.keras (a run that has not finished an epoch?)"
            )
    raise ModelFolderError(f"no model folder or run named {path}")


def read_model_config(path: str | Path) -> tuple[Path, dict]:
    """(model folder, its config.json) after the checks that need no TensorFlow."""
    folder = resolve_model_folder(path)
    config = read_json(folder / "config.json")
    if not isinstance(config, dict) or not config:
        raise ModelFolderError(f"{folder} has no readable config.json")
    if config.get("schema_version") != SCHEMA_VERSION:
        raise ModelFolderError(
            f"{folder} was trained under label schema {config.get('schema_version')}, "
            f"this code uses {SCHEMA_VERSION}: retrain it"
        )
    return folder, config


def trained_on(config: dict) -> dict:
    """What a model learnt from, as config.json records it: {"path", "format", "n_images",
    "synthetic"}. Runs trained before the synthetic flag are judged by their data path."""
    data = config.get("data") or {}
    path = data.get("path") or (config.get("train") or {}).get("data") or ""
    synthetic = data.get("synthetic")
    if synthetic is None:  # older runs: the default set, or a folder the generator marked
        from portrait_core.training.train import is_synthetic

        synthetic = bool(path) and is_synthetic(
            path if Path(path).is_absolute() else PROJECT / path
        )
    return {
        "path": path,
        "format": data.get("format", "unknown"),
        "n_images": data.get("n_images"),
        "synthetic": bool(synthetic),
    }


def test_scores(folder: Path) -> dict[str, dict]:
    """{head: {"accuracy", "balanced_accuracy", "n"}} on the model's own test split, from its
    metrics.json ({} where it has none): how often each head is right, shown beside its label."""
    metrics = read_json(Path(folder) / "metrics.json", {})
    attributes = metrics.get("attributes") if isinstance(metrics, dict) else None
    if not isinstance(attributes, dict) or metrics.get("split", "test") != "test":
        return {}
    return {
        a: {k: m[k] for k in ("accuracy", "balanced_accuracy", "n")}
        for a, m in attributes.items()
        if isinstance(m, dict) and all(k in m for k in ("accuracy", "balanced_accuracy", "n"))
    }


class Predictor:
    def __init__(self, folder: str | Path):
        import tensorflow as tf

        from portrait_core.models.layers import load_saved_model

        self.folder, config = read_model_config(folder)
        self.config = config
        self.model_name = config["model"]["name"]
        self.cam_layer = config["model"].get("cam_layer")
        self.image_size = int(config["preprocessing"]["image_size"])
        self.model = load_saved_model(self.folder / "model.keras", compile=False)
        self.attributes = [a for a in ATTRIBUTES if a in self.model.output_names]
        # {head: T} from calibration.json; {} for a folder without it (it predicts as before)
        self.temperatures = {
            a: t for a, t in read_temperatures(self.folder).items() if a in self.attributes
        }
        self.framing = framing_of(config)
        self.trained_on = trained_on(config)
        self.test_scores = test_scores(self.folder)
        # the explanation whose maps proved most faithful on the test split (faithfulness.py);
        # None where that was not measured
        self.most_faithful = most_faithful(read_json(self.folder / "metrics.json", {}))
        self._explainer: Explainer | None = None
        # A compiled forward pass: for one photo, Keras' eager call costs about twice the
        # arithmetic (measured here: 32 ms eager vs 11 ms compiled, cnn_custom at 128 px).
        self._forward = tf.function(
            lambda x: self.model(x, training=False), reduce_retracing=True, jit_compile=False
        )

    @property
    def explain_methods(self) -> list[str]:
        # from the CAM layer, not the list the run stored: older runs predate HiResCAM
        return list(METHODS) if self.cam_layer else ["saliency"]

    @property
    def default_method(self) -> str:
        """The most faithful method where measured, else the model's first."""
        if self.most_faithful in self.explain_methods:
            return self.most_faithful
        return self.explain_methods[0]

    def square(self, photo: Image.Image) -> np.ndarray:
        return letterbox(photo, self.image_size)

    def _probabilities(self, square: np.ndarray) -> dict[str, np.ndarray]:
        """Each head's probabilities, calibrated where the folder has a temperature for it."""
        return {a: p[0] for a, p in self._batch_probabilities(square[None]).items()}

    def _batch_probabilities(self, squares: np.ndarray) -> dict[str, np.ndarray]:
        out = self._forward(np.asarray(squares, np.float32))
        probs = {a: np.asarray(out[a]) for a in self.attributes}
        return {
            a: apply_temperature(p, self.temperatures[a]) if a in self.temperatures else p
            for a, p in probs.items()
        }

    def predict_squares(self, squares: np.ndarray) -> list[dict[str, dict]]:
        """predict() for a batch of letterboxed squares (N x S x S x 3), one forward pass."""
        probs = self._batch_probabilities(squares)
        return [
            {
                a: {**_labelled(a, p[i]), "calibrated": a in self.temperatures}
                for a, p in probs.items()
            }
            for i in range(len(squares))
        ]

    def crop(self, photo: Image.Image, face: Face) -> Image.Image:
        """A detected face cut out in this model's training framing (faces.py)."""
        return crop_face(photo, face, self.framing)

    def predict(self, image) -> dict[str, dict]:
        """{attribute: {"label": class, "probs": {class: probability}, "calibrated": bool}}
        for one photo; "calibrated" says whether the head's temperature was applied."""
        photo = as_rgb(image)
        probs = self._probabilities(self.square(photo))
        return {
            a: {**_labelled(a, p), "calibrated": a in self.temperatures} for a, p in probs.items()
        }

    def explain(
        self, image, method: str = "gradcam", classes: dict[str, str] | None = None
    ) -> dict[str, np.ndarray]:
        """Heat maps on the original photo (H x W, [0, 1]) for each head's predicted class
        (or the class given per attribute in `classes`)."""
        check_method(method, self.cam_layer, self.model_name)
        photo = as_rgb(image)
        square = self.square(photo)
        if classes is None:
            chosen = {a: int(np.argmax(p)) for a, p in self._probabilities(square).items()}
        else:
            chosen = {a: ATTRIBUTES[a].index(c) for a, c in classes.items()}
        if self._explainer is None:
            self._explainer = Explainer(self.model, self.cam_layer, self.model_name)
        maps = self._explainer.heatmaps(square, chosen, method)
        return {a: crop_to_photo(m, *photo.size) for a, m in maps.items()}


def _labelled(attribute: str, probs: np.ndarray) -> dict:
    classes = ATTRIBUTES[attribute].classes
    return {
        "label": classes[int(np.argmax(probs))],
        "probs": {c: float(p) for c, p in zip(classes, probs)},
    }


def load_predictor(path: str | Path) -> Predictor:
    return Predictor(path)
