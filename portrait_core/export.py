"""A trained model for other runtimes: TensorFlow SavedModel, TFLite (LiteRT) or ONNX.

    from portrait_core.export import export_model, load_exported
    export_model("artifacts/default", "onnx", "exports/default")  # -> exports/default/model.onnx
    run = load_exported("exports/default")      # runs it with the format's own runtime
    run(squares)                                # {head: N x K probabilities}, as predict() gives

What the export carries, so that a consumer needs no Portrait Lab code:
- the preprocessing after letterboxing. The input, named `pixels`, is float32 RGB in 0..255,
  N x S x S x 3 (S = the model's image_size): a letterboxed square as `images.letterbox` makes it,
  cast to float. The zero-centring (training mean image, /255) is model.keras' own layer
  `zero_centre`, so it travels inside the graph. Letterboxing itself stays outside: it needs the
  photo's own size, and every platform has an image library for it.
- the calibration. Where the folder has calibration.json, each head with a temperature ends in
  softmax(log(max(p, P_FLOOR)) / T), the formula `Predictor` applies in numpy (calibration.py), so
  the exported probabilities are predict()'s. One output per head, named after it.
- the label names and temperatures: labels.json beside the artifact, and inside it where the
  format has room: a SavedModel's `labels` signature and assets.extra/labels.json, ONNX
  metadata_props, a TFLite metadata buffer (each under METADATA_KEY).

Keras 3 writes all three formats itself: `model.export(format="litert")` (TensorFlow's
TFLiteConverter), `model.export(format="onnx")` (tf2onnx), and `keras.export.ExportArchive`, the
class behind `model.export(format="tf_saved_model")`, used directly to add the labels signature.
Only the metadata is written with the formats' own libraries (onnx; TensorFlow's flatbuffer_utils).

TensorFlow and the converters are imported inside the functions: the CLI checks its arguments
with FORMATS and check_destination before anything loads TensorFlow.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

LABELS_FILE = "labels.json"
INPUT_NAME = "pixels"
# The key the labels document is stored under inside an artifact: an ONNX metadata_props key,
# a TFLite metadata entry's name, the output of the SavedModel's `labels` signature.
METADATA_KEY = "portrait_lab_labels"
SIGNATURE = "serving_default"  # the SavedModel and TFLite signature a consumer calls


@dataclass(frozen=True)
class ExportFormat:
    name: str  # what --format takes
    artifact: str  # file or folder written into the --out folder
    runtime: str  # what runs it, as labels.json tells the consumer


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("savedmodel", "saved_model", "TensorFlow (tf.saved_model.load, TF Serving)"),
        ExportFormat("tflite", "model.tflite", "LiteRT / TFLite interpreter (ai_edge_litert)"),
        ExportFormat("onnx", "model.onnx", "ONNX Runtime"),
    )
}


class ExportError(ValueError):
    """An export that cannot be made as asked; the message says why (the CLI: one line, exit 2)."""


def check_format(fmt: str, quantize: bool = False) -> ExportFormat:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if quantize and fmt != "tflite":
        raise ExportError("--quantize applies to --format tflite only")
    return FORMATS[fmt]


def check_destination(out: str | Path, force: bool = False) -> Path:
    """The --out folder, refused when it is a file, or holds anything and force is off: an export
    never overwrites what is there unless asked (and then only its own artifact and labels.json)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; --out names a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} is not empty; pass --force to write into it anyway")
    return out


def labels_document(
    config: dict,
    heads: list[str],
    temperatures: dict[str, float],
    fmt: ExportFormat,
    quantize: bool = False,
) -> dict:
    """labels.json: what a consumer needs to feed the artifact and read what it returns."""
    import keras
    import tensorflow as tf

    from portrait_core.calibration import P_FLOOR
    from portrait_core.schema import ATTRIBUTES, SCHEMA_VERSION

    size = int(config["preprocessing"]["image_size"])
    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    if fmt.name == "onnx":
        versions["tf2onnx"] = metadata.version("tf2onnx")
    return {
        "format": fmt.name,
        "artifact": fmt.artifact,
        "runtime": fmt.runtime,
        "quantized": "dynamic-range int8 weights" if quantize else None,
        "image_size": size,
        "input": {
            "name": INPUT_NAME,
            "shape": [None, size, size, 3],
            "dtype": "float32",
            "layout": "NHWC",
            "colour": "RGB",
            "range": [0, 255],
            "preprocessing": (
                "letterbox: the longer side scaled to image_size (bilinear), padded to a square "
                "centred on black; the zero-centring (training mean image, /255) is in the graph"
            ),
        },
        "heads": heads,
        "classes": {h: list(ATTRIBUTES[h].classes) for h in heads},
        "temperatures": {h: temperatures[h] for h in heads if h in temperatures},
        "outputs": (
            "one probability vector per head, named after it, classes in the order of "
            "'classes'; a head with a temperature is calibrated in the graph: "
            f"softmax(log(max(p, {P_FLOOR:.6g})) / T)"
        ),
        "signature": SIGNATURE if fmt.name != "onnx" else None,
        "schema_version": SCHEMA_VERSION,
        "source": {
            "run_id": config.get("run_id"),
            "model": config.get("model", {}).get("name"),
        },
        "versions": versions,
    }


def serving_model(model, heads: list[str], temperatures: dict[str, float]):
    """model.keras wrapped for serving: `pixels` in, each head's (calibrated) probabilities out.

    The temperature is built from keras.ops in the functional graph, not a custom layer, so the
    three exporters trace plain ops (LOG, MAXIMUM, SOFTMAX exist in TFLite's builtins and ONNX).
    """
    import keras

    from portrait_core.calibration import P_FLOOR

    size = int(model.inputs[0].shape[1])
    pixels = keras.Input((size, size, 3), dtype="float32", name=INPUT_NAME)
    raw = model(pixels)
    outputs = {}
    for head in heads:
        probs = raw[head]
        if head in temperatures:
            logs = keras.ops.log(keras.ops.maximum(probs, P_FLOOR))
            probs = keras.ops.softmax(logs / temperatures[head], axis=-1)
        outputs[head] = keras.layers.Identity(name=head)(probs)  # the output's name = the head's
    return keras.Model(pixels, outputs, name="portrait_lab_serving")


def export_model(
    source: str | Path, fmt: str, out: str | Path, force: bool = False, quantize: bool = False
) -> Path:
    """Write `source` (run id, run folder or model folder) in format `fmt` into the folder `out`,
    with labels.json beside it; returns the artifact's path.

    Written into a hidden folder inside `out` first and moved into place at the end, so a failed
    export leaves nothing that looks complete. quantize (tflite only): dynamic-range quantisation,
    int8 weights, about a quarter of the size; the probabilities move (0.043 at most on the
    default model, measured by bench/run.py; tests/test_export.py bounds them at 0.1).
    """
    from portrait_core.calibration import read_temperatures
    from portrait_core.models.layers import load_saved_model
    from portrait_core.predict import read_model_config
    from portrait_core.schema import ATTRIBUTES

    kind = check_format(fmt, quantize)
    folder, config = read_model_config(source)
    out = check_destination(out, force)
    model = load_saved_model(folder / "model.keras", compile=False)
    heads = [h for h in ATTRIBUTES if h in model.output_names]
    temperatures = {h: t for h, t in read_temperatures(folder).items() if h in heads}
    document = labels_document(config, heads, temperatures, kind, quantize)
    wrapped = serving_model(model, heads, temperatures)

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        WRITERS[kind.name](wrapped, staging / kind.artifact, document, quantize)
        (staging / LABELS_FILE).write_text(json.dumps(document, indent=2, ensure_ascii=False))
        for item in (kind.artifact, LABELS_FILE):
            target = out / item
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            (staging / item).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / kind.artifact


def _write_savedmodel(model, path: Path, document: dict, quantize: bool) -> None:
    """SavedModel with two signatures: serving_default (= serve) and `labels`, which returns the
    labels document as a JSON string; the same file in assets.extra/, TensorFlow's folder for
    files that travel with a model without being part of its graph."""
    import tensorflow as tf
    from keras.export import ExportArchive

    size = document["image_size"]
    text = json.dumps(document, ensure_ascii=False)

    def serve(pixels):  # the argument's name is the signature's input name
        return model(pixels, training=False)

    def labels():
        return {METADATA_KEY: tf.constant(text)}

    # No archive.track(model): it stores every weight a second time beside the ones the endpoint
    # captures (keras-team/keras#23553, open in Keras 3.15: twice the size on disk and in memory).
    # The endpoint's variables are saved all the same; track() adds only lookup tables, and this
    # model has none.
    archive = ExportArchive()
    spec = tf.TensorSpec((None, size, size, 3), tf.float32, name=INPUT_NAME)
    archive.add_endpoint("serve", serve, input_signature=[spec])  # the first: serving_default
    archive.add_endpoint("labels", labels, input_signature=[])
    archive.write_out(str(path), verbose=False)
    (path / "assets.extra").mkdir(exist_ok=True)
    (path / "assets.extra" / LABELS_FILE).write_text(text)


def _write_tflite(model, path: Path, document: dict, quantize: bool) -> None:
    """model.export(format="litert"), then the labels document as a metadata buffer."""
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    options = {"optimizations": [tf.lite.Optimize.DEFAULT]} if quantize else {}
    model.export(str(path), format="litert", verbose=False, **options)
    flat = flatbuffer_utils.read_model(str(path))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(document, ensure_ascii=False).encode(), np.uint8)
    flat.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_KEY, len(flat.buffers) - 1
    flat.metadata.append(entry)
    flatbuffer_utils.write_model(flat, str(path))


def _write_onnx(model, path: Path, document: dict, quantize: bool) -> None:
    """model.export(format="onnx") (tf2onnx), then the document in metadata_props and the batch
    dimension named "batch" (tf2onnx leaves a generated name such as unk__130)."""
    import onnx

    size = document["image_size"]
    model(np.zeros((1, size, size, 3), np.float32))  # Keras exports to ONNX only a called model
    with warnings.catch_warnings():  # Keras' tf2onnx patch probes the removed np.object
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", verbose=False)
    proto = onnx.load(str(path))
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    proto.doc_string = "Portrait Lab: RGB pixels 0..255 in, one probability vector per head out"
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(document, ensure_ascii=False)})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


WRITERS = {"savedmodel": _write_savedmodel, "tflite": _write_tflite, "onnx": _write_onnx}


def read_labels(out: str | Path) -> dict:
    """An export folder's labels.json."""
    path = Path(out) / LABELS_FILE
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path} is missing or unreadable: not an export folder") from exc
    if document.get("format") not in FORMATS:
        raise ExportError(f"{path} names no known format")
    return document


def embedded_labels(artifact: str | Path) -> dict:
    """The labels document stored inside an artifact (what a consumer without labels.json reads)."""
    artifact = Path(artifact)
    if artifact.is_dir():  # SavedModel: through its signature, as TF Serving would
        import tensorflow as tf

        text = tf.saved_model.load(str(artifact)).signatures["labels"]()[METADATA_KEY]
        return json.loads(text.numpy().decode())
    if artifact.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(artifact)).metadata_props}
        return json.loads(props[METADATA_KEY])
    from tensorflow.lite.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model(str(artifact))
    for entry in flat.metadata:
        if entry.name.decode() == METADATA_KEY:
            return json.loads(bytes(flat.buffers[entry.buffer].data).decode())
    raise ExportError(f"{artifact} carries no {METADATA_KEY} metadata")


def load_exported(out: str | Path, threads: int | None = None) -> Callable:
    """A function squares (N x S x S x 3, uint8 or float, RGB 0..255) -> {head: N x K float32},
    running the export in `out` with its format's own runtime: TensorFlow, the LiteRT
    interpreter (ai-edge-litert) or ONNX Runtime. The last two are requirements-dev.txt's: they
    are what a consumer runs, not what exporting needs. threads: the interpreters' thread count
    (None: each runtime's default)."""
    document = read_labels(out)
    artifact = Path(out) / document["artifact"]
    heads = document["heads"]

    if document["format"] == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(artifact)).signatures[SIGNATURE]

        def run(squares):
            got = serve(**{INPUT_NAME: tf.constant(np.asarray(squares, np.float32))})
            return {h: got[h].numpy() for h in heads}

    elif document["format"] == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(str(artifact), num_threads=threads).get_signature_runner(SIGNATURE)

        def run(squares):
            got = runner(**{INPUT_NAME: np.asarray(squares, np.float32)})
            return {h: got[h] for h in heads}

    else:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(
            str(artifact), options, providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]

        def run(squares):
            got = session.run(None, {INPUT_NAME: np.asarray(squares, np.float32)})
            return {h: got[names.index(h)] for h in heads}

    return run


def artifact_bytes(path: str | Path) -> int:
    """Size on disk of a file, or of every file under a folder (a SavedModel)."""
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size
