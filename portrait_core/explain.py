"""Explanations: which pixels made each head say what it said. Compute (arrays) apart from render.

`Explainer.heatmaps` returns one map per attribute, float32 in [0, 1], on the model's letterboxed
square; `crop_to_photo` maps it back onto the original photo; `overlay` blends it onto the photo.

All heads are explained in ONE forward and backward pass: the picture is repeated once per head
in a batch, and sample h is scored by head h only. Samples do not interact (batch norm runs in
inference mode), so each sample's gradient is exactly its own head's, at about the cost of a
batch of four instead of four separate passes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from portrait_core.images import letterbox_box
from portrait_core.models.catalog import CAM_METHODS as METHODS  # Keras-free

# Computed here, compiled (tf-keras-vis runs the other methods).
COMPILED_CAMS = ("hirescam", "gradcam")
SCORECAM_MAX_N = 64  # Score-CAM scores only the 64 strongest channels: exact enough, 8x faster


METHOD_HELP = (
    "hirescam (default): gradient x activation at each place of the last conv layer, faithful "
    "for heads that read a flattened feature map, like the default model's. gradcam: the "
    "gradients averaged over the picture first, as the 2022 study did; their signs can cancel "
    "and leave an empty map. gradcam++ and scorecam: other CAM weightings. saliency: input "
    "gradients, the only method for models without conv layers (mlp_custom)."
)


def empty_map_note(method: str, title: str, label: str, heat: np.ndarray) -> str | None:
    """What to tell a user whose heat map is empty (no place raised the score), else None."""
    if float(np.max(heat)) > 0:
        return None
    other = "gradcam++ or hirescam" if method == "gradcam" else "another method"
    return (
        f"{method} found no place that raised '{label}' for {title}, so its map is empty; "
        f"{other} may show where the model looked."
    )


def check_method(method: str, cam_layer: str | None, model_name: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose from {', '.join(METHODS)}")
    if method != "saliency" and cam_layer is None:
        raise ValueError(
            f"{method} needs a convolutional layer and {model_name} has none; use 'saliency'"
        )


class Explainer:
    """Wraps tf-keras-vis once per model (it clones the model), then explains any picture."""

    def __init__(self, model, cam_layer: str | None, model_name: str = "this model"):
        import keras

        # tf-keras-vis zips scores with outputs, so it needs a list-output model: a view of the
        # same layers (no copy of weights) with the heads in a list.
        self.heads = list(model.output_names)
        self.model = keras.Model(model.inputs, [model.get_layer(h).output for h in self.heads])
        self.cam_layer = cam_layer
        self.model_name = model_name
        self._tools: dict[str, object] = {}
        self._compiled: dict[str, object] = {}

    def _tool(self, method: str):
        if method not in self._tools:
            from tf_keras_vis.gradcam import Gradcam
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
            from tf_keras_vis.saliency import Saliency
            from tf_keras_vis.scorecam import Scorecam
            from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

            cls = {
                "gradcam": Gradcam,
                "gradcam++": GradcamPlusPlus,
                "scorecam": Scorecam,
                "saliency": Saliency,
            }[method]
            # Scores on logits, not softmax outputs: softmax saturates and flattens gradients.
            import keras

            keras.utils.disable_interactive_logging()  # Score-CAM would print progress bars
            self._tools[method] = cls(self.model, model_modifier=ReplaceToLinear(), clone=True)
        return self._tools[method]

    def _compiled_cam(self, method: str):
        """Grad-CAM or HiResCAM as one tf.function, on tf-keras-vis' linearised clone.

        Grad-CAM (Selvaraju et al. 2017), tf-keras-vis' formula: the gradients are averaged over
        the picture into one weight per channel, then ReLU(sum over channels of weight x
        activation). tf-keras-vis rebuilds its model view and runs eagerly on every call (270 ms
        for the default model's four heads here); compiled, the same arithmetic costs a fraction
        of that, and tests/test_predict.py checks that the maps equal tf-keras-vis' own.

        HiResCAM (Draelos & Carin 2020): ReLU(sum over channels of gradient x activation), each
        location with its own gradient. Where a head reads a flattened feature map (cnn_custom,
        AlexNet), its score is exactly the sum of these products, so the map shows the places
        that raised it. Grad-CAM's averaging lets gradients of opposite sign at different places
        cancel: on the default model it left 41 of 60 face-shape maps and 36 of 60 hairstyle maps
        empty (no location with positive evidence). For a head on global average pooling
        (ResNet50 with pooling=gap) the two coincide.
        """
        if method not in self._compiled:
            import keras
            import tensorflow as tf

            linear = self._tool("gradcam").model  # softmax replaced by linear, as tf-keras-vis
            view = keras.Model(
                linear.inputs, [*linear.outputs, linear.get_layer(self.cam_layer).output]
            )
            per_location = method == "hirescam"

            @tf.function(reduce_retracing=True)
            def cams(x, masks):
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(x)
                    *outputs, conv = view(x, training=False)
                    # one-hot masks pick each sample's own head and class (tf-keras-vis sums
                    # the gradients of its list of scores, which is this sum's gradient)
                    score = tf.add_n([tf.reduce_sum(o * m) for o, m in zip(outputs, masks)])
                grads = tape.gradient(score, conv)
                if not per_location:
                    grads = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
                return tf.nn.relu(tf.reduce_sum(conv * grads, axis=-1))

            self._compiled[method] = cams
        return self._compiled[method]

    def _cam_raw(
        self, batch: np.ndarray, classes: dict[str, int], wanted: list[str], method: str
    ) -> np.ndarray:
        """A compiled CAM zoomed to the picture, before tf-keras-vis' per-picture normalisation."""
        from scipy.ndimage import zoom
        from tf_keras_vis.utils import zoom_factor

        masks = []
        for head, n_classes in zip(self.heads, (int(o.shape[-1]) for o in self.model.outputs)):
            mask = np.zeros((len(wanted), n_classes), np.float32)
            for i, h in enumerate(wanted):
                if h == head:
                    mask[i, classes[head]] = 1.0
            masks.append(mask)
        cam = self._compiled_cam(method)(batch, masks).numpy()
        return zoom(cam, zoom_factor(cam.shape, batch.shape), order=1)

    def heatmaps(
        self, square: np.ndarray, classes: dict[str, int], method: str = "gradcam"
    ) -> dict[str, np.ndarray]:
        """square: one letterboxed picture (HxWx3, 0..255); classes: the class to explain per head.

        Returns {attribute: float32 HxW in [0, 1]} on the square, for the heads in `classes`.
        """
        check_method(method, self.cam_layer, self.model_name)
        wanted = [h for h in self.heads if h in classes]
        if not wanted:
            return {}
        batch = np.repeat(square[None].astype(np.float32), len(wanted), axis=0)
        if method in COMPILED_CAMS:
            from tf_keras_vis.utils import normalize

            maps = normalize(self._cam_raw(batch, classes, wanted, method))
        else:
            maps = self._tf_keras_vis_maps(method, batch, classes, wanted)
        maps = np.asarray(maps, dtype=np.float32).reshape(len(wanted), *square.shape[:2])
        return {h: _unit_range(m) for h, m in zip(wanted, maps)}

    def _tf_keras_vis_maps(self, method: str, batch, classes: dict[str, int], wanted: list[str]):
        """gradcam++, scorecam, saliency: one batched tf-keras-vis call, picture i for head i."""
        scores = []
        for head in self.heads:  # tf-keras-vis takes one score per model output, in order
            if head in classes:
                mask = np.array([1.0 if h == head else 0.0 for h in wanted], np.float32)
                scores.append(_masked_score(classes[head], mask))
            else:
                scores.append(_inactive)
        tool = self._tool(method)
        if method == "saliency":
            return tool(scores, batch, smooth_samples=0, keepdims=False)
        if method == "scorecam":
            return tool(scores, batch, penultimate_layer=self.cam_layer, max_N=SCORECAM_MAX_N)
        return tool(scores, batch, penultimate_layer=self.cam_layer)


def _masked_score(class_index: int, mask: np.ndarray):
    def score(output):
        return output[:, class_index] * mask

    return score


def _inactive(output):
    return output[:, 0] * 0.0


def _unit_range(m: np.ndarray) -> np.ndarray:
    m = np.nan_to_num(m.astype(np.float32))
    low, high = float(m.min()), float(m.max())
    return np.zeros_like(m) if high - low < 1e-12 else (m - low) / (high - low)


def crop_to_photo(square_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """A map on the letterboxed square -> the same map on the original photo (height x width)."""
    size = square_map.shape[0]
    left, top, new_w, new_h = letterbox_box(width, height, size)
    inner = square_map[top : top + new_h, left : left + new_w]
    resized = Image.fromarray(inner.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


# A "jet"-like colour map: blue (cold) -> cyan -> yellow -> red (hot).
_STOPS = np.array([0.0, 0.35, 0.65, 1.0])
_COLOURS = np.array([[0, 0, 160], [0, 200, 255], [255, 230, 0], [220, 0, 0]], np.float32)


def colourise(heatmap: np.ndarray) -> np.ndarray:
    """HxW in [0, 1] -> HxWx3 uint8 colours."""
    channels = [np.interp(heatmap, _STOPS, _COLOURS[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def overlay(photo: Image.Image, heatmap: np.ndarray, opacity: float = 0.45) -> Image.Image:
    """Blend a heat map (photo's height x width, in [0, 1]) onto the photo; hotter = more opaque."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, not {opacity}")
    base = np.asarray(photo.convert("RGB"), dtype=np.float32)
    if heatmap.shape != base.shape[:2]:
        raise ValueError(f"heat map is {heatmap.shape}, the photo {base.shape[:2]}: crop it first")
    alpha = (opacity * (0.25 + 0.75 * heatmap))[..., None]
    blended = base * (1 - alpha) + colourise(heatmap).astype(np.float32) * alpha
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8))
