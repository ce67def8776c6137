"""Bad input, tried at scale: Hypothesis feeds damaged pictures and label files to the readers.

Every input must end in one of the outcomes the code promises: a decoded picture or `BadImage`
with a message (images); a loaded record or a counted, named omission in the import report
(loaders); or, for a problem with the whole source, a ValueError naming the file. Any other
exception fails the test, and so does a slow example (the deadline) or a hang (an alarm). Each
test also checks that inputs which should load do load, so none can pass by refusing everything.

The examples are the same on every run (100 per test, about 15 s in all), so a failure in CI
repeats on the next run. To hunt, set PORTRAIT_LAB_FUZZ_EXAMPLES (say 2000): that many examples,
drawn afresh on each run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import struct
import tempfile
import zlib
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import (
    HealthCheck,
    assume,
    currently_in_test_context,
    event,
    example,
    given,
    settings,
)
from hypothesis import strategies as st
from PIL import Image

from portrait_core.data import aihub, celeba, manifest, utkface
from portrait_core.data.table import (
    AGE_OUT_OF_RANGE,
    BAD_ROW,
    MALFORMED_JSON,
    MISSING_FIELD,
    NO_IMAGE,
    NO_LABEL,
    UNKNOWN_VALUE,
    UNREADABLE_IMAGE,
    Dataset,
)
from portrait_core.images import IMAGE_SUFFIXES, MAX_PIXELS, BadImage, check_readable, open_rgb
from portrait_core.schema import (
    ATTRIBUTE_KEYS,
    ATTRIBUTES,
    FACE_SHAPE_RAW,
    GENDER_RAW,
    HAIRSTYLE_RAW,
)

HUNTING = "PORTRAIT_LAB_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("PORTRAIT_LAB_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=3),  # a damaged file must fail fast, not after a long decode
    derandomize=not HUNTING,  # the same examples every run: a failure in CI repeats locally
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HANG_SECONDS = 20  # far above the deadline: only a hang reaches it
BLANK_REASONS = {MISSING_FIELD, UNKNOWN_VALUE, AGE_OUT_OF_RANGE}


def outcome(text: str) -> None:
    """Tally an outcome: `pytest --hypothesis-show-statistics` shows how often each came up."""
    if currently_in_test_context():
        event(text)


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS):
    """Turn a hang into a failure (the deadline judges an example only once it has finished)."""

    def stop(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------------------------
# Pictures: open_rgb and check_readable


def encode(fmt: str, size: tuple[int, int] = (12, 9), **kw) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 50).convert("RGB").save(buf, format=fmt, **kw)
    return buf.getvalue()


def _rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate on display: exif_transpose has to parse it
    return exif.tobytes()


READABLE = {  # the formats Portrait Lab reads, one way or two each
    "png": encode("PNG"),
    "jpeg": encode("JPEG"),
    "jpeg+exif": encode("JPEG", exif=_rotated_exif()),
    "webp": encode("WEBP"),
    "webp lossless": encode("WEBP", lossless=True),
    "bmp": encode("BMP"),
}
OTHER_FORMATS = {fmt: encode(fmt) for fmt in ("GIF", "TIFF", "PCX", "TGA", "PPM")}
PNG, JPEG = READABLE["png"], READABLE["jpeg"]
MAGIC = [  # the first bytes Pillow's readers look for, so random tails reach their parsers
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"\xff\xd8\xff\xe1",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"BM",
    b"GIF89a",
    b"II*\x00",
    b"DDS ",
    b"8BPS",
]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose header (with a correct checksum) claims width x height, with a tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


@st.composite
def damaged(draw) -> bytes:
    """A picture of some format, then truncated, bit-flipped, spliced, overwritten or cut."""
    files = {**READABLE, **OTHER_FORMATS}
    data = bytearray(files[draw(st.sampled_from(sorted(files)))])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["truncate", "flip", "splice", "overwrite", "cut"]))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "overwrite":
            patch = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(patch)] = patch
        else:
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


random_bytes = st.one_of(
    st.binary(max_size=256),
    st.builds(lambda magic, tail: magic + tail, st.sampled_from(MAGIC), st.binary(max_size=256)),
)
huge_png = st.builds(
    png_declaring,
    st.integers(1, 2**31 - 1),
    st.integers(1, 2**31 - 1),
    st.sampled_from([1, 2, 4, 8, 16]),
    st.sampled_from([0, 2, 3, 4, 6]),
)
any_picture_bytes = st.one_of(damaged(), random_bytes, huge_png)


def decoded_or_bad(source, name: str | None = None) -> Image.Image | None:
    """open_rgb's promise: an RGB picture, or BadImage with a message naming the file."""
    try:
        with no_hang():
            img = open_rgb(source, name=name)
    except BadImage as exc:
        assert name is None or str(exc).startswith(f"{name} "), exc
        outcome("BadImage")
        return None
    outcome("decoded")
    assert img.mode == "RGB" and img.width > 0 and img.height > 0
    assert img.width * img.height <= MAX_PIXELS
    img.tobytes()  # the pixels are really there
    return img


@pytest.mark.parametrize("kind", sorted(READABLE))
def test_the_undamaged_pictures_decode(kind):
    """The baseline the damaged ones are made from: a readable file is never refused."""
    assert decoded_or_bad(READABLE[kind]) is not None


@pytest.mark.parametrize("fmt", sorted(OTHER_FORMATS))
def test_other_formats_are_refused_by_name(tmp_path, fmt):
    with pytest.raises(BadImage, match=r"not an image Portrait Lab reads \(PNG, JPEG"):
        open_rgb(OTHER_FORMATS[fmt], name="face.png")
    path = tmp_path / "face.png"  # counted at import too, not left for training to trip on
    path.write_bytes(OTHER_FORMATS[fmt])
    with pytest.raises(BadImage, match="not an image"):
        check_readable(path)


@FUZZ
@given(data=any_picture_bytes)
@example(data=b"")
@example(data=PNG[: len(PNG) // 2])
@example(data=JPEG[: len(JPEG) // 2])
@example(data=png_declaring(100_000, 100_000))
@example(data=b"DDS " + b"\x7c" + b"\x00" * 123)  # Pillow's DDS reader: NotImplementedError
def test_open_rgb_decodes_or_says_bad_image(data):
    decoded_or_bad(data, name="upload.png")


@FUZZ
@given(
    size=st.integers(1, 2**31 - 1).flatmap(
        lambda w: st.tuples(st.just(w), st.integers(MAX_PIXELS // w + 1, 2**31 - 1))
    )
)
@example(size=(100_000, 100_000))
@example(size=(MAX_PIXELS // 1000 + 1, 1000))  # over our limit, under Pillow's own guard
def test_a_picture_declaring_too_many_pixels_is_refused_by_size(tmp_path, size):
    width, height = size
    assert width * height > MAX_PIXELS
    with no_hang(), pytest.raises(BadImage, match="megapixels"):
        open_rgb(png_declaring(width, height), name="big.png")
    path = tmp_path / "big.png"
    path.write_bytes(png_declaring(width, height))
    with no_hang(), pytest.raises(BadImage, match="megapixels"):
        check_readable(path)  # the import counts it, rather than training stopping on it


@FUZZ
@given(
    data=st.one_of(any_picture_bytes, st.sampled_from(sorted(READABLE.values()))),
    suffix=st.sampled_from([*IMAGE_SUFFIXES, ".JPG", ".txt", ""]),
)
@example(data=PNG, suffix=".jpg")  # a PNG saved as .jpg
@example(data=JPEG, suffix=".png")
def test_files_of_any_name_decode_or_say_bad_image(tmp_path, data, suffix):
    path = tmp_path / f"photo{suffix}"
    path.write_bytes(data)
    img = decoded_or_bad(path)
    if data in READABLE.values():  # a readable picture under any name reads, and imports
        assert img is not None
        check_readable(path)
        return
    try:
        with no_hang():
            check_readable(path)
    except BadImage as exc:
        assert str(path) in str(exc)
    else:
        assert data not in OTHER_FORMATS.values()


# --------------------------------------------------------------------------------------------
# What every loader promises about one picture: loaded, every label a class or counted blank,
# or left out with one named reason.


def labels_of(dataset: Dataset) -> dict[str, str | None]:
    values = dataset.table.iloc[0]
    return {k: (None if pd.isna(values[k]) else values[k]) for k in ATTRIBUTE_KEYS}


def assert_report_is_consistent(dataset: Dataset) -> None:
    report = dataset.report
    assert report.n_loaded == len(dataset)
    assert report.n_skipped == sum(report.skipped.values())
    for reason, n in report.skipped.items():
        assert isinstance(reason, str) and reason and n > 0 and report.examples[reason]
    for attr, reasons in report.blank_labels.items():
        assert attr in ATTRIBUTE_KEYS and set(reasons) <= BLANK_REASONS, report.blank_labels
        for reason in reasons:
            assert report.blank_examples[attr][reason]  # the file is named
        assert reasons.total() <= int(dataset.table[attr].isna().sum())
    json.dumps(report.examples, ensure_ascii=False).encode()  # printable
    json.dumps(report.blank_examples, ensure_ascii=False).encode()
    report.summary().encode()


def assert_one_picture_accounted_for(
    dataset: Dataset, dropped: set[str], counted: tuple[str, ...] = ATTRIBUTE_KEYS
) -> str | None:
    """The outcome for a folder holding one picture: 'loaded' or the reason it was left out.

    `counted` are the attributes this source labels, so a missing one of them is a blank label.
    """
    assert_report_is_consistent(dataset)
    report = dataset.report
    if len(dataset) == 1:
        assert report.n_skipped == 0, report.skipped
        labels = labels_of(dataset)
        blank = {a for a, reasons in report.blank_labels.items() if reasons.total()}
        assert report.n_blank == len(blank)  # one picture: one reason per blank label
        assert blank == {a for a in counted if labels[a] is None}, (labels, report)
        assert any(v is not None for v in labels.values())
        outcome(f"loaded, {len(blank)} labels blank")
        return "loaded"
    assert len(dataset) == 0 and report.n_skipped == 1 and report.n_blank == 0
    (reason,) = report.skipped
    assert reason in dropped, report.skipped
    outcome(f"left out: {reason}")
    return reason


# --------------------------------------------------------------------------------------------
# AI Hub: a valid picture beside a mutated N.json


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [*GENDER_RAW, *FACE_SHAPE_RAW, *HAIRSTYLE_RAW, "35", " 45 ", "٣٥", "1e3", "-0", "١٢٠"]
    ),
    st.integers(4_000, 6_000).map(lambda n: "9" * n),  # int() refuses over 4,300 digits
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
PLACES = [  # every place a label is read from, and the containers on the way
    ("info",),
    ("info", 0),
    ("info", 0, "gender"),
    ("info", 0, "age"),
    ("descripton",),
    ("descripton", 0),
    ("descripton", 0, "face"),
    ("descripton", 0, "face", "type"),
    ("descripton", 0, "hairstyle"),
    ("descripton", 0, "hairstyle", "type"),
]


def valid_doc() -> dict:
    return {
        "info": [{"gender": "F", "age": 34}],
        "descripton": [{"face": {"type": "계란형"}, "hairstyle": {"type": "웨이브형"}}],
    }


@st.composite
def mutated_doc(draw) -> dict:
    """The data set's JSON with keys removed, values replaced by anything, or lists wrapped."""
    doc = valid_doc()
    for _ in range(draw(st.integers(1, 4))):
        place = draw(st.sampled_from(PLACES))
        action = draw(st.sampled_from(["delete", "replace", "wrap"]))
        try:
            parent = doc
            for step in place[:-1]:
                parent = parent[step]
            if action == "delete":
                del parent[place[-1]]
            elif action == "replace":
                parent[place[-1]] = draw(json_values)
            else:
                parent[place[-1]] = [parent[place[-1]]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation took the way there away
    if draw(st.booleans()) and "descripton" in doc:
        doc["description"] = doc.pop("descripton")  # the other spelling
    return doc


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


@st.composite
def label_file(draw) -> bytes:
    """The bytes of an N.json: a mutated document, deeply nested, re-encoded or damaged."""
    kind = draw(st.sampled_from(["json", "json", "json", "deep", "encoding", "damaged", "bytes"]))
    if kind == "deep":
        deep = nested(draw(st.sampled_from([10, 1_000, 10_000, 100_000])))
        where = draw(st.sampled_from(["{}", '{{"info": {}}}', '{{"info": [{{"age": {}}}]}}']))
        return where.format(deep).encode()
    text = json.dumps(draw(mutated_doc()), ensure_ascii=draw(st.booleans()))
    if kind == "json":
        return text.encode()
    if kind == "encoding":  # Korean values in a legacy code page, UTF-16, a byte order mark
        codec = draw(st.sampled_from(["cp949", "utf-16", "utf-8-sig", "latin-1"]))
        return text.encode(codec, errors="replace")
    if kind == "damaged":
        raw = text.encode()
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(max_size=8)) + raw[at + 1 :]
    return draw(st.binary(max_size=64))


LONG_AGE = b'{"info": [{"gender": "F", "age": "' + b"9" * 5000 + b'"}]}'  # int() refuses it


@pytest.fixture
def aihub_folder(tmp_path: Path) -> Path:
    (tmp_path / "7.png").write_bytes(PNG)
    return tmp_path


def test_aihub_the_unmutated_label_file_loads_all_four_labels(aihub_folder):
    (aihub_folder / "7.json").write_text(json.dumps(valid_doc(), ensure_ascii=False), "utf-8")
    dataset = aihub.load(aihub_folder)
    assert assert_one_picture_accounted_for(dataset, set()) == "loaded"
    assert labels_of(dataset) == {
        "gender": "female",
        "age": "30s",
        "face_shape": "oval",
        "hairstyle": "wavy",
    }


@FUZZ
@given(content=label_file())
@example(content=nested(10_000).encode())  # RecursionError inside json.loads
@example(content=LONG_AGE)
@example(content=b"\xff\xfe\x00garbage")
@example(content=json.dumps(valid_doc(), ensure_ascii=False).encode("cp949"))
def test_aihub_any_label_file_loads_or_is_counted(aihub_folder, content):
    (aihub_folder / "7.json").write_bytes(content)
    with no_hang():
        dataset = aihub.load(aihub_folder)
    result = assert_one_picture_accounted_for(dataset, dropped={MALFORMED_JSON, NO_LABEL})
    if content == LONG_AGE:
        assert result == "loaded" and dataset.report.blank_counts() == {
            "age": {AGE_OUT_OF_RANGE: 1},
            **{a: {MISSING_FIELD: 1} for a in ("face_shape", "hairstyle")},
        }


@FUZZ
@given(picture=any_picture_bytes)
def test_aihub_any_picture_loads_or_is_counted(aihub_folder, picture):
    (aihub_folder / "7.png").write_bytes(picture)
    (aihub_folder / "7.json").write_text(json.dumps(valid_doc()), "utf-8")
    with no_hang():
        dataset = aihub.load(aihub_folder)
    assert_one_picture_accounted_for(dataset, dropped={UNREADABLE_IMAGE})


@FUZZ
@given(content=label_file())
@example(content=nested(10_000).encode())
def test_aihub_detect_answers_for_any_label_file(tmp_path, content):
    (tmp_path / "7.json").write_bytes(content)  # no picture beside it: detect opens the file
    with no_hang():
        assert aihub.detect(tmp_path) in (True, False)


# --------------------------------------------------------------------------------------------
# UTKFace: labels in mutated file names

digits = st.one_of(
    st.text(alphabet="0123456789", min_size=1, max_size=4),
    st.sampled_from(["٣٥", "00025", "9" * 60]),  # Arabic-Indic digits; a long number
)
utk_suffix = st.sampled_from([".jpg", ".jpg.chip.jpg", ".JPG", ".jpeg", ".png", ".jpg.chip", ""])
name_text = st.text(
    st.characters(exclude_characters="/\x00", exclude_categories=("Cs",)), max_size=12
)


@st.composite
def utk_name(draw) -> str:
    """{age}_{gender}_{race}_{datetime}{suffix}, with parts dropped, doubled or replaced."""
    parts = [draw(digits), draw(st.sampled_from(["0", "1", "2", "01", "٠"]) | digits)]
    parts += [draw(digits), draw(digits)]
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(parts) - 1))
        action = draw(st.sampled_from(["drop", "double", "replace"]))
        if action == "drop" and len(parts) > 1:
            del parts[at]
        elif action == "double":
            parts.insert(at, parts[at])
        else:
            parts[at] = draw(name_text)
    name = "_".join(parts) + draw(utk_suffix)
    assume(name not in ("", ".", "..") and len(name.encode()) <= 200)
    return name


@FUZZ
@given(name=utk_name(), picture=st.sampled_from([JPEG, PNG, JPEG[:40], b"text"]))
@example(name="25_0_0_20170109150557335.jpg", picture=JPEG)
@example(name="5_1_0_2017.jpg.chip.jpg", picture=JPEG)  # under 20: age blank
@example(name="40_7_0_2017.jpg", picture=JPEG)  # gender code unknown: gender blank
def test_utkface_any_file_name_loads_or_is_counted(name, picture):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / name).write_bytes(picture)
        with no_hang():
            dataset = utkface.load(folder)
    if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
        assert len(dataset) == 0 and dataset.report.n_skipped == 0  # not a picture: not listed
        return
    result = assert_one_picture_accounted_for(
        dataset, {utkface.UNPARSEABLE_NAME, UNREADABLE_IMAGE, NO_LABEL}, ("gender", "age")
    )
    if result == "loaded":
        assert utkface.parse_name(name) is not None and picture in (JPEG, PNG)
    if name == "25_0_0_20170109150557335.jpg":
        assert labels_of(dataset)["age"] == "20s" and labels_of(dataset)["gender"] == "male"


@FUZZ
@given(raw=st.binary(min_size=1, max_size=60))
def test_utkface_undecodable_file_names_load_or_are_counted(raw):
    name = b"25_1_0_" + raw.replace(b"/", b"_").replace(b"\x00", b"_") + b".jpg"
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(os.fsencode(folder), name), "wb") as handle:
            handle.write(JPEG)
        with no_hang():
            dataset = utkface.load(folder)
    assert_one_picture_accounted_for(
        dataset, {utkface.UNPARSEABLE_NAME, NO_LABEL}, ("gender", "age")
    )


# --------------------------------------------------------------------------------------------
# CelebA: a mutated list_attr_celeba.txt beside a few pictures

CELEBA_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()
CELEBA_PICTURES = {"000001.jpg": JPEG, "000002.jpg": JPEG, "000003.jpg": b"garbage"}
bad_cell = st.sampled_from(["0", "2", "+1", "１", "-1.0", "x", "1-1"])
token = st.text(
    st.characters(exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=10
)


@st.composite
def celeba_row(draw) -> str:
    """A row of 1 / -1 values, then a value or two replaced, or one too few or too many."""
    name = draw(st.sampled_from([*CELEBA_PICTURES, "000009.jpg"]) | token)
    n = len(CELEBA_NAMES)
    cells = draw(st.lists(st.sampled_from(["1", "-1"]), min_size=n, max_size=n))
    for _ in range(draw(st.integers(0, 2))):
        cells[draw(st.integers(0, n - 1))] = draw(bad_cell)
    if draw(st.integers(0, 4)) == 0:
        cells = cells[:-1] if draw(st.booleans()) else [*cells, "1"]
    return name + draw(st.sampled_from([" ", "  ", "\t"])) + " ".join(cells)


@st.composite
def celeba_file(draw) -> str:
    rows = draw(st.lists(celeba_row(), max_size=5))
    count = draw(st.just(str(len(rows))) | st.sampled_from(["202599", "", "three", "٣"]))
    names = list(CELEBA_NAMES)
    if draw(st.integers(0, 5)) == 0:
        del names[draw(st.integers(0, len(names) - 1))]  # a column gone (maybe one we use)
    header = " ".join(names) + draw(st.sampled_from([" ", "", "\t"]))
    lines = [count, header, *rows]
    for _ in range(draw(st.integers(0, 2))):  # blank lines, stray text
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "  ", "#"])))
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines) + "\n"


@pytest.fixture
def celeba_folder(tmp_path: Path) -> Path:
    for name, data in CELEBA_PICTURES.items():
        (tmp_path / "img_align_celeba").mkdir(exist_ok=True)
        (tmp_path / "img_align_celeba" / name).write_bytes(data)
    return tmp_path


def whole_source_problem(exc: ValueError, path: Path) -> None:
    assert type(exc) is ValueError and str(path) in str(exc), exc
    outcome("the whole file refused")


def rows_outcome(dataset: Dataset) -> None:
    report = dataset.report
    loaded, left_out = ("some" if n else "none" for n in (len(dataset), report.n_skipped))
    outcome(f"{loaded} loaded, {left_out} left out")


@FUZZ
@given(text=celeba_file())
def test_celeba_any_attribute_file_loads_or_is_counted(celeba_folder, text):
    attr_path = celeba_folder / celeba.ATTR_FILE
    attr_path.write_text(text, encoding="utf-8")
    try:
        with no_hang():
            dataset = celeba.load(celeba_folder)
    except ValueError as exc:  # no count line or no usable header: the whole file is wrong
        whole_source_problem(exc, attr_path)
        return
    assert_report_is_consistent(dataset)
    rows_outcome(dataset)
    report = dataset.report
    rows = [line for line in text.splitlines()[2:] if line.split()]
    assert report.n_loaded + report.n_skipped == len(rows)  # every row accounted for
    assert set(report.skipped) <= {BAD_ROW, NO_IMAGE, UNREADABLE_IMAGE}
    assert set(report.blank_labels) <= {"hairstyle"}
    assert dataset.table["gender"].notna().all()  # every loaded row says its gender
    assert dataset.table["age"].isna().all()  # CelebA has no age; not counted as blank


@FUZZ
@given(content=st.one_of(st.binary(max_size=200), damaged()))
@example(content=b"")
@example(content=b"\xff\xfe1\n")
def test_celeba_any_bytes_as_attribute_file(celeba_folder, content):
    attr_path = celeba_folder / celeba.ATTR_FILE
    attr_path.write_bytes(content)
    try:
        with no_hang():
            dataset = celeba.load(celeba_folder)
    except ValueError as exc:
        whole_source_problem(exc, attr_path)
        return
    assert_report_is_consistent(dataset)


def test_celeba_a_good_row_loads(celeba_folder):
    """What the fuzzed rows are mutated from loads, so the property above is not vacuous."""
    values = ["-1"] * len(CELEBA_NAMES)
    values[CELEBA_NAMES.index("Male")] = "1"
    row = "000001.jpg " + " ".join(values)
    (celeba_folder / celeba.ATTR_FILE).write_text(f"1\n{' '.join(CELEBA_NAMES)}\n{row}\n")
    dataset = celeba.load(celeba_folder)
    assert len(dataset) == 1 and labels_of(dataset)["gender"] == "male"


# --------------------------------------------------------------------------------------------
# CSV manifests: mutated cells, rows and headers

MANIFEST_PICTURES = {"a.png": PNG, "sub/b.jpg": JPEG, "bad.png": PNG[:30]}
MANIFEST_DAMAGE = [b'"', b"\x00", b"\xff", b"\r", b"\x0c", "\u2028".encode(), b",", b"\n"]
label_cell = st.one_of(
    st.sampled_from([c for a in ATTRIBUTES.values() for c in a.classes]),
    st.sampled_from(["", " ", "Male", "35", "015", "130", "9" * 5000, "٣٥", "oval ", "30s\n"]),
    st.text(max_size=8),
)
path_cell = st.one_of(
    st.sampled_from(sorted(MANIFEST_PICTURES)),
    st.sampled_from(["nope.png", "", "../a.png", "sub\\b.jpg", "sub", " a.png "]),
    name_text,
)


@st.composite
def manifest_text(draw) -> tuple[str, str, list[str]]:
    """A manifest written by csv.writer (quoting done right), its delimiter and label columns."""
    columns = draw(st.lists(st.sampled_from([*ATTRIBUTE_KEYS, "notes"]), unique=True))
    columns.insert(draw(st.integers(0, len(columns))), "path")
    header = [draw(st.sampled_from([c, c.upper(), f" {c} "])) for c in columns]
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    for _ in range(draw(st.integers(0, 5))):
        cells = [draw(path_cell) if c == "path" else draw(label_cell) for c in columns]
        if draw(st.integers(0, 5)) == 0:
            cells = cells[:-1] if draw(st.booleans()) else [*cells, "extra"]
        writer.writerow(cells)
    return buf.getvalue(), delimiter, [c for c in columns if c in ATTRIBUTE_KEYS]


@pytest.fixture
def manifest_folder(tmp_path: Path) -> Path:
    for name, data in MANIFEST_PICTURES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return tmp_path


def data_rows(text: str, delimiter: str) -> int:
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))[1:]
    return sum(any(c.strip() for c in row) for row in rows)


@FUZZ
@given(made=manifest_text())
@example(made=("path,gender,age\na.png,male," + "9" * 5000 + "\n", ",", ["gender", "age"]))
@example(made=("path,gender,age\na.png,female,35\n", ",", ["gender", "age"]))
def test_manifest_any_rows_load_or_are_counted(manifest_folder, made):
    text, delimiter, attributes = made
    csv_path = manifest_folder / "m.csv"
    csv_path.write_text(text, encoding="utf-8")
    try:
        with no_hang():
            dataset = manifest.load(csv_path)
    except ValueError as exc:
        whole_source_problem(exc, csv_path)
        assert not attributes, exc  # only a manifest without label columns is refused whole
        return
    assert_report_is_consistent(dataset)
    rows_outcome(dataset)
    report = dataset.report
    assert report.n_loaded + report.n_skipped == data_rows(text, delimiter)
    for attr in ATTRIBUTE_KEYS:  # a missing label of a column present is counted, no other
        blank = sum(report.blank_labels.get(attr, {}).values())
        missing = int(dataset.table[attr].isna().sum())
        assert blank == (missing if attr in attributes else 0), (attr, report.blank_labels)
    if text == "path,gender,age\na.png,female,35\n":
        assert labels_of(dataset)["age"] == "30s"
    if text.startswith("path,gender,age\na.png,male,999"):  # int() would refuse 5,000 digits
        assert report.blank_counts() == {"age": {AGE_OUT_OF_RANGE: 1}}


@FUZZ
@given(made=manifest_text(), data=st.data())
def test_manifest_damaged_bytes_load_or_raise_value_error(manifest_folder, made, data):
    raw = bytearray(made[0].encode())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.sampled_from(MANIFEST_DAMAGE))
    csv_path = manifest_folder / "m.csv"
    csv_path.write_bytes(bytes(raw))
    try:
        with no_hang():
            dataset = manifest.load(csv_path)
    except ValueError as exc:
        whole_source_problem(exc, csv_path)
        return
    assert_report_is_consistent(dataset)


@FUZZ
@given(content=st.one_of(st.binary(max_size=120), st.text(max_size=120).map(str.encode)))
def test_manifest_detect_answers_for_any_file(tmp_path, content):
    csv_path = tmp_path / "m.csv"
    csv_path.write_bytes(content)
    with no_hang():
        found = manifest.detect(csv_path)
    assert found in (True, False)
    if found:  # a file detected as a manifest loads or says what is wrong with it
        try:
            assert_report_is_consistent(manifest.load(csv_path))
        except ValueError as exc:
            whole_source_problem(exc, csv_path)


# --------------------------------------------------------------------------------------------
# The Predict page: damaged uploads end in an error message each, never in an exception


def _flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


BAD_UPLOADS = {
    "empty.png": b"",
    "random.png": bytes((i * 73 + 41) % 256 for i in range(512)),
    "half.png": PNG[: len(PNG) // 2],
    "half.jpg": JPEG[: len(JPEG) // 2],
    "flipped.png": _flipped(PNG, 19),  # the width in the header: its checksum no longer holds
    "notes.png": b"hello, this is text\n",
    "huge.png": png_declaring(100_000, 100_000),
    "animation.png": OTHER_FORMATS["GIF"],  # a GIF under a .png name
    "scan.jpg": OTHER_FORMATS["TIFF"],
    "nothing.png": png_declaring(0, 0),  # a picture of zero pixels
}


def test_predict_page_says_what_is_wrong_with_each_bad_upload(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    from portrait_core import leaderboard, paths

    # The shipped model makes the page offer uploads; no upload here gets as far as loading it.
    monkeypatch.setattr(leaderboard, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(leaderboard, "DEFAULT_MODEL", paths.PROJECT / "artifacts" / "default")
    monkeypatch.setattr(paths, "DEFAULT_DATA", tmp_path / "no-data")
    monkeypatch.setenv("PORTRAIT_LAB_DATA", str(tmp_path / "no-data"))
    at = AppTest.from_file(str(paths.PROJECT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/predict.py").run()
    assert not at.exception, [e.value for e in at.exception]
    files = [(name, data, "image/png") for name, data in BAD_UPLOADS.items()]
    at.file_uploader(key="uploads").set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == len(BAD_UPLOADS), errors
    for name, message in zip(BAD_UPLOADS, errors, strict=True):
        assert message.startswith(f"{name} "), message  # each names its file and its problem
    assert "megapixels" in errors[list(BAD_UPLOADS).index("huge.png")]
    assert "not an image" in errors[list(BAD_UPLOADS).index("animation.png")]
    assert not at.get("image")  # nothing was shown as if it were a photo
