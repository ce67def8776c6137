"""Explanations: which pixels made each head say what it said. Compute (arrays) apart from render.

`Explainer.heatmaps` returns one map per attribute, float32 in [0, 1], on the model's letterboxed
square; `crop_to_photo` maps it back onto the original photo; `overlay` blends it onto the photo,
smoothed to the photo's scale and coloured with the inferno map, which `colour_bar` draws as a
key. How far each method's map can be believed is measured in faithfulness.py.

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
# (picture, head) samples per call in Explainer.heatmaps_many: 64 pictures at 224 px with their
# gradients stay within a few hundred MB
MANY_BATCH = 64
# Score-CAM runs the model on every sample times SCORECAM_MAX_N masked copies: fewer at a time
SCORECAM_BATCH = 4


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

    def _masks(self, samples: list[tuple[str, int]]) -> list[np.ndarray]:
        """Per model output, a one-hot row per sample (head, class): its class where the sample
        is that output's head, zeros elsewhere."""
        masks = []
        for head, n_classes in zip(self.heads, (int(o.shape[-1]) for o in self.model.outputs)):
            mask = np.zeros((len(samples), n_classes), np.float32)
            for k, (h, c) in enumerate(samples):
                if h == head:
                    mask[k, c] = 1.0
            masks.append(mask)
        return masks

    def _cam_raw(
        self, batch: np.ndarray, classes: dict[str, int], wanted: list[str], method: str
    ) -> np.ndarray:
        """A compiled CAM zoomed to the picture, before tf-keras-vis' per-picture normalisation;
        sample i is scored by head wanted[i] at classes[wanted[i]]."""
        return self._cam_masked(batch, self._masks([(h, classes[h]) for h in wanted]), method)

    def _cam_masked(self, batch: np.ndarray, masks: list[np.ndarray], method: str) -> np.ndarray:
        from scipy.ndimage import zoom
        from tf_keras_vis.utils import zoom_factor

        cam = self._compiled_cam(method)(batch, masks).numpy()
        return zoom(cam, zoom_factor(cam.shape, batch.shape), order=1)

    def heatmaps(
        self, square: np.ndarray, classes: dict[str, int], method: str = "gradcam"
    ) -> dict[str, np.ndarray]:
        """square: one letterboxed picture (HxWx3, 0..255); classes: the class to explain per head.

        Returns {attribute: float32 HxW in [0, 1]} on the square, for the heads in `classes`.
        """
        chosen = {h: np.array([c]) for h, c in classes.items()}
        return self.heatmaps_many(np.asarray(square)[None], chosen, method)[0]

    def heatmaps_many(
        self, squares: np.ndarray, classes: dict[str, np.ndarray], method: str = "gradcam"
    ) -> list[dict[str, np.ndarray]]:
        """heatmaps for N pictures at once: squares N x H x W x 3; classes: per head, the class
        to explain in each picture. One {attribute: map} per picture.

        Every (picture, head) pair is one sample of a batch (MANY_BATCH at a time), scored by its
        own head and class only; samples do not interact, so each map is the one `heatmaps` makes
        for that picture alone, at a fraction of the calls (faithfulness explains 24 pictures
        with four methods: 96 calls one picture at a time)."""
        check_method(method, self.cam_layer, self.model_name)
        wanted = [h for h in self.heads if h in classes]
        squares = np.asarray(squares, dtype=np.float32)
        if not wanted or not len(squares):
            return [{} for _ in squares]
        pairs = [(i, h) for i in range(len(squares)) for h in wanted]
        maps = []
        step = SCORECAM_BATCH if method == "scorecam" else MANY_BATCH
        for begin in range(0, len(pairs), step):
            part = pairs[begin : begin + step]
            batch = squares[[i for i, _ in part]]
            masks = self._masks([(h, int(classes[h][i])) for i, h in part])
            if method in COMPILED_CAMS:
                from tf_keras_vis.utils import normalize

                found = normalize(self._cam_masked(batch, masks, method))
            else:
                found = self._tf_keras_vis_maps(method, batch, masks)
            maps.extend(np.asarray(found, dtype=np.float32).reshape(len(part), *batch.shape[1:3]))
        out: list[dict[str, np.ndarray]] = [{} for _ in squares]
        for (i, h), m in zip(pairs, maps):
            out[i][h] = _unit_range(m)
        return out

    def _tf_keras_vis_maps(self, method: str, batch, masks: list[np.ndarray]):
        """gradcam++, scorecam, saliency: one batched tf-keras-vis call, each sample scored by
        its head's one-hot mask row (all zero for the other heads' samples)."""
        scores = [_masked_score(mask) for mask in masks]  # one per model output, in order
        tool = self._tool(method)
        if method == "saliency":
            return tool(scores, batch, smooth_samples=0, keepdims=False)
        if method == "scorecam":
            return tool(scores, batch, penultimate_layer=self.cam_layer, max_N=SCORECAM_MAX_N)
        return tool(scores, batch, penultimate_layer=self.cam_layer)


def _masked_score(mask: np.ndarray):
    """tf-keras-vis score for one head: each sample's output at its one-hot mask row (zero for
    samples of other heads)."""

    def score(output):
        import tensorflow as tf

        return tf.reduce_sum(output * mask, axis=-1)

    return score


def _unit_range(m: np.ndarray) -> np.ndarray:
    m = np.nan_to_num(m.astype(np.float32))
    low, high = float(m.min()), float(m.max())
    return np.zeros_like(m) if high - low < 1e-12 else (m - low) / (high - low)


# --- render ----------------------------------------------------------------------------------------
# matplotlib's "inferno" (van der Walt & Smith, CC0), 256 RGB entries as hex. Perceptually uniform
# and its lightness rises from black to pale yellow, so "hotter" reads as "brighter" on any photo
# and in greyscale; the old jet-like map put its brightest colour (yellow) in the middle. Embedded
# rather than imported: matplotlib is a dev dependency only (requirements-dev.txt), too large to
# ship for one table. Made with
#   (matplotlib.colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
# and tests/test_explain_render.py checks it against matplotlib where matplotlib is installed.
_INFERNO_HEX = (
    "00000401000501010601010802010a02020c02020e03021004031204031405041706041907051b08051d09061f"
    "0a07220b07240c08260d08290e092b10092d110a30120a32140b34150b37160b39180c3c190c3e1b0c411c0c43"
    "1e0c451f0c48210c4a230c4c240c4f260c51280b53290b552b0b572d0b592f0a5b310a5c320a5e340a5f360961"
    "3809623909633b09643d09653e0966400a67420a68440a68450a69470b6a490b6a4a0c6b4c0c6b4d0d6c4f0d6c"
    "510e6c520e6d540f6d550f6d57106e59106e5a116e5c126e5d126e5f136e61136e62146e64156e65156e67166e"
    "69166e6a176e6c186e6d186e6f196e71196e721a6e741a6e751b6e771c6d781c6d7a1d6d7c1d6d7d1e6d7f1e6c"
    "801f6c82206c84206b85216b87216b88226a8a226a8c23698d23698f2469902568922568932667952667972766"
    "9827669a28659b29649d29649f2a63a02a63a22b62a32c61a52c60a62d60a82e5fa92e5eab2f5ead305dae305c"
    "b0315bb1325ab3325ab43359b63458b73557b93556ba3655bc3754bd3853bf3952c03a51c13a50c33b4fc43c4e"
    "c63d4dc73e4cc83f4bca404acb4149cc4248ce4347cf4446d04545d24644d34743d44842d54a41d74b3fd84c3e"
    "d94d3dda4e3cdb503bdd513ade5238df5337e05536e15635e25734e35933e45a31e55c30e65d2fe75e2ee8602d"
    "e9612bea632aeb6429eb6628ec6726ed6925ee6a24ef6c23ef6e21f06f20f1711ff1731df2741cf3761bf37819"
    "f47918f57b17f57d15f67e14f68013f78212f78410f8850ff8870ef8890cf98b0bf98c0af98e09fa9008fa9207"
    "fa9407fb9606fb9706fb9906fb9b06fb9d07fc9f07fca108fca309fca50afca60cfca80dfcaa0ffcac11fcae12"
    "fcb014fcb216fcb418fbb61afbb81dfbba1ffbbc21fbbe23fac026fac228fac42afac62df9c72ff9c932f9cb35"
    "f8cd37f8cf3af7d13df7d340f6d543f6d746f5d949f5db4cf4dd4ff4df53f4e156f3e35af3e55df2e661f2e865"
    "f2ea69f1ec6df1ed71f1ef75f1f179f2f27df2f482f3f586f3f68af4f88ef5f992f6fa96f8fb9af9fc9dfafda1"
    "fcffa4"
)
INFERNO = np.frombuffer(bytes.fromhex(_INFERNO_HEX), np.uint8).reshape(256, 3)

# The map is blurred with a Gaussian of this standard deviation, as a share of its longer side
# (3 px on a 64 px square, 51 px on a 1024 px photo): a CAM from an 8 x 8 conv grid or a saliency
# map of single pixels then reads as regions at any photo size, not as scattered specks. Chosen
# by looking at the default model's maps on two real photos (grace_hopper.jpg, astronaut.png):
# at 1/32 the hot places were still dots, at 1/14 neighbouring regions merged into one haze.
SMOOTH_SIGMA = 1 / 20
# Blurring happens on a copy at most this many pixels on a side, then is scaled back up: a map
# made on the model's square (64 to 224 px) holds no finer detail, and a 1024 x 768 map blurred at
# full size took 320 ms here, against 11 ms this way.
SMOOTH_WORK_SIDE = 128
# The overlay's strength at the hottest place. Colder places are more transparent, alpha =
# opacity x sqrt(heat), so the photo shows through where the map is cold. On those two photos a
# plain alpha = opacity x heat left everything below half heat all but invisible: the maps of a
# model meeting real photos are mostly lukewarm, and that is the part a reader must still see.
DEFAULT_OPACITY = 0.7


def smooth_map(heatmap: np.ndarray, sigma: float = SMOOTH_SIGMA) -> np.ndarray:
    """A heat map blurred to the scale of its picture and stretched back to [0, 1].

    sigma is a share of the map's longer side, so the same photo gives the same regions at any
    resolution. A map with no heat at all stays all zeros.
    """
    from scipy.ndimage import gaussian_filter

    m = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
    if m.ndim != 2:
        raise ValueError(f"a heat map is H x W, not {m.shape}")
    height, width = m.shape
    scale = min(1.0, SMOOTH_WORK_SIDE / max(height, width))
    work = m
    if scale < 1.0:  # Pillow's bilinear shrink averages the whole footprint: no hot pixel is lost
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        work = _resize(m, size)
    blurred = gaussian_filter(work, sigma * max(work.shape), mode="nearest")
    if scale < 1.0:
        blurred = _resize(blurred, (width, height))
    return _unit_range(blurred)


def _resize(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(m.astype(np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def crop_to_photo(square_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """A map on the letterboxed square -> the same map on the original photo (height x width).

    Geometry only: the values are the Explainer's own (no smoothing), so what is measured
    (faithfulness.py) and what `overlay` draws come from the same map."""
    size = square_map.shape[0]
    left, top, new_w, new_h = letterbox_box(width, height, size)
    inner = square_map[top : top + new_h, left : left + new_w]
    return np.clip(_resize(inner, (width, height)), 0.0, 1.0)


def colourise(heatmap: np.ndarray) -> np.ndarray:
    """HxW in [0, 1] -> HxWx3 uint8 colours of the inferno map (0 black, 1 pale yellow)."""
    index = np.rint(np.clip(np.nan_to_num(heatmap), 0.0, 1.0) * 255).astype(np.intp)
    return INFERNO[index]


def overlay(
    photo: Image.Image,
    heatmap: np.ndarray,
    opacity: float = DEFAULT_OPACITY,
    smooth: bool = True,
) -> Image.Image:
    """Blend a heat map (photo's height x width, in [0, 1]) onto the photo.

    The map is first smoothed to the photo's scale (`smooth_map`; smooth=False draws it as it
    is). Each pixel's colour is mixed in with alpha = opacity x sqrt(heat): the hottest place at
    `opacity`, the coldest leave the photo as it was.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, not {opacity}")
    base = np.asarray(photo.convert("RGB"), dtype=np.float32)
    if heatmap.shape != base.shape[:2]:
        raise ValueError(f"heat map is {heatmap.shape}, the photo {base.shape[:2]}: crop it first")
    heat = smooth_map(heatmap) if smooth else np.clip(np.nan_to_num(heatmap), 0.0, 1.0)
    alpha = (opacity * np.sqrt(heat))[..., None]
    blended = base * (1 - alpha) + colourise(heat).astype(np.float32) * alpha
    return Image.fromarray(np.rint(blended).clip(0, 255).astype(np.uint8))


def colour_bar(width: int = 256, height: int = 20) -> Image.Image:
    """The overlay's colour scale as a horizontal bar, width x height, labelled 'low' at the cold
    (left) end and 'high' at the hot end: show it under the overlays, so a reader knows which
    colour means more."""
    if width < 48 or height < 12:
        raise ValueError(
            f"a colour bar needs at least 48 x 12 pixels to hold its labels, not {width} x {height}"
        )
    from PIL import ImageDraw, ImageFont

    ramp = colourise(np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :])
    bar = Image.fromarray(np.repeat(ramp, height, axis=0))
    draw = ImageDraw.Draw(bar)
    font = ImageFont.load_default(size=max(8, round(height * 0.6)))
    margin = max(2, height // 5)
    # light text on the dark end, dark text on the light end: both readable
    draw.text((margin, height / 2), "low", fill=(255, 255, 255), font=font, anchor="lm")
    draw.text((width - margin, height / 2), "high", fill=(0, 0, 0), font=font, anchor="rm")
    return bar
