"""The data sources (AI Hub, CSV manifest, UTKFace, CelebA) and format detection.

Every fixture is a handful of tiny pictures written into tmp_path; each test checks the table and
the import report's counts exactly.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from portrait_core.data import aihub, celeba, manifest, utkface
from portrait_core.data.formats import (
    FORMATS,
    UnknownFormat,
    accepted_formats,
    detect_format,
    load_dataset,
)
from portrait_core.data.table import (
    AGE_OUT_OF_RANGE,
    BAD_ROW,
    MALFORMED_JSON,
    MISSING_FIELD,
    NO_IMAGE,
    NO_LABEL,
    UNKNOWN_VALUE,
    UNREADABLE_IMAGE,
)
from portrait_core.schema import ATTRIBUTE_KEYS, FACE_SHAPE_RAW, GENDER_RAW, HAIRSTYLE_RAW


def _image_bytes(fmt: str, color=(120, 60, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 5), color).save(buf, format=fmt)
    return buf.getvalue()


PNG = _image_bytes("PNG")
JPG = _image_bytes("JPEG")


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def montage_json(
    gender: object = "M",
    age: object = 35,
    face: object = "계란형",
    hair: object = "직모(생머리)",
    key: str = "descripton",
) -> str:
    """An AI Hub label file as the data set writes it; a None value leaves that field out."""
    info = {"org_img_name": "1"}
    if gender is not None:
        info["gender"] = gender
    if age is not None:
        info["age"] = age
    description = {}
    if face is not None:
        description["face"] = {"type": face}
    if hair is not None:
        description["hairstyle"] = {"type": hair}
    return json.dumps({"info": [info], key: [description]}, ensure_ascii=False)


def pair(root: Path, n: int | str, text: str | bytes, image: bytes = PNG) -> None:
    write(root / f"{n}.json", text)
    write(root / f"{n}.png", image)


def labels_of(dataset, path: Path) -> dict:
    row = dataset.table.loc[dataset.table["path"] == str(path)]
    assert len(row) == 1, f"{path} not loaded exactly once"
    return {k: (None if pd.isna(v) else v) for k, v in row.iloc[0][list(ATTRIBUTE_KEYS)].items()}


# --------------------------------------------------------------------------------------------
# Every mapping row of the schema, end to end through an AI Hub pair


def _load_one(tmp_path: Path, **fields):
    pair(tmp_path, 1, montage_json(**fields))
    dataset = aihub.load(tmp_path)
    assert dataset.report.n_loaded == 1 and len(dataset) == 1
    return labels_of(dataset, tmp_path / "1.png"), dataset.report


@pytest.mark.parametrize(("raw", "expected"), sorted(GENDER_RAW.items()))
def test_aihub_gender_mapping(tmp_path, raw, expected):
    labels, report = _load_one(tmp_path, gender=raw)
    assert labels["gender"] == expected
    assert not report.skipped and not report.blank_labels


@pytest.mark.parametrize(("raw", "expected"), sorted(FACE_SHAPE_RAW.items()))
def test_aihub_face_shape_mapping(tmp_path, raw, expected):
    labels, report = _load_one(tmp_path, face=raw)
    assert labels["face_shape"] == expected
    assert not report.skipped and not report.blank_labels


@pytest.mark.parametrize(("raw", "expected"), sorted(HAIRSTYLE_RAW.items()))
def test_aihub_hairstyle_mapping(tmp_path, raw, expected):
    labels, report = _load_one(tmp_path, hair=raw)
    assert labels["hairstyle"] == expected
    assert not report.skipped and not report.blank_labels


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (19, None),
        (20, "20s"),
        (29, "20s"),
        (30, "30s"),
        (39, "30s"),
        (40, "40s"),
        (49, "40s"),
        (50, "50s"),
        (59, "50s"),
        (60, "60+"),
        (69, "60+"),
        (99, "60+"),
        (120, "60+"),
        (121, None),
        (0, None),
        (-5, None),
        ("45", "40s"),  # a number written as a string is still read
    ],
)
def test_aihub_age_bands(tmp_path, age, expected):
    labels, report = _load_one(tmp_path, age=age)
    assert labels["age"] == expected
    assert not report.skipped  # the picture is kept ...
    assert report.blank_counts() == ({} if expected else {"age": {AGE_OUT_OF_RANGE: 1}})
    # the other labels survive an age out of range
    assert labels["gender"] == "male" and labels["hairstyle"] == "straight"


@pytest.mark.parametrize("age", ["forty", True, [40], "4 0"])
def test_aihub_age_that_is_not_a_number_is_unknown(tmp_path, age):
    labels, report = _load_one(tmp_path, age=age)
    assert labels["age"] is None
    assert not report.skipped and report.blank_counts() == {"age": {UNKNOWN_VALUE: 1}}


# --------------------------------------------------------------------------------------------
# AI Hub: every kind of bad file, counted exactly


@pytest.fixture
def aihub_tree(tmp_path: Path) -> Path:
    root = tmp_path / "montage"
    pair(root, 1, montage_json())  # the data set's spelling
    pair(root, 3, montage_json(gender="F", age=52, key="description"))  # gap at 2; other spelling
    pair(root / "sub" / "deeper", 10, montage_json(face="사각형", hair="웨이브형"))  # nested
    pair(root / "sub", 1, montage_json(gender="F"))  # same N in another folder: its own pair
    write(root / "4.json", montage_json())  # no picture
    write(root / "5.png", PNG)  # no labels file
    pair(root, 6, montage_json(), image=PNG[: len(PNG) // 2])  # truncated picture
    pair(root, 7, montage_json(), image=b"not a picture at all")  # not a picture
    pair(root, 8, '{"info": [{"gender": "M"')  # unparseable JSON
    pair(root, 9, "[1, 2, 3]")  # JSON, but not an object
    pair(root, 11, '{"foo": 1}')  # an object of some other kind
    pair(root, 18, '{"info": "M", "descripton": [{}]}')  # info is not a list
    pair(root, 19, b"\xff\xfe\x00garbage")  # not even text
    pair(root, 12, montage_json(gender=None))  # missing field
    pair(root, 13, montage_json(face="하트형"))  # unknown value
    pair(root, 14, montage_json(age=15))  # age out of range
    pair(root, 15, json.dumps({"info": [{"gender": "M", "age": 33}]}))  # no descripton at all
    pair(root, 16, '{"info": [{}], "descripton": [{}]}')  # structure right, no labels
    pair(root, 17, montage_json(gender="X", age=130, face="", hair=None))  # nothing usable
    pair(root, 20, montage_json(gender=" F ", face={"x": 1}))  # padded value; face not a string
    write(root / "notes.json", "{}")  # not numbered: ignored
    write(root / "cover.png", PNG)  # not numbered: ignored
    write(root / "readme.txt", "hello")
    pair(root / ".hidden", 30, montage_json())  # hidden folders are skipped
    return root


def test_aihub_counts_every_kind_of_bad_file(aihub_tree):
    dataset = aihub.load(aihub_tree)
    report = dataset.report
    assert report.format == "aihub" and dataset.format == "aihub"
    assert dict(report.skipped) == {
        NO_IMAGE: 1,
        aihub.NO_LABELS_FILE: 1,
        UNREADABLE_IMAGE: 2,
        MALFORMED_JSON: 5,
        NO_LABEL: 2,  # 16, 17
    }
    assert report.n_skipped == 11
    # labels left blank on pictures that were loaded: not counted as left out
    assert report.blank_counts() == {
        "gender": {MISSING_FIELD: 1},  # 12
        "age": {AGE_OUT_OF_RANGE: 1},  # 14
        "face_shape": {MISSING_FIELD: 1, UNKNOWN_VALUE: 2},  # 15; 13, 20
        "hairstyle": {MISSING_FIELD: 1},  # 15
    }
    assert report.n_blank == 6
    loaded = {Path(p).relative_to(aihub_tree).as_posix() for p in dataset.table["path"]}
    assert loaded == {
        "1.png",
        "3.png",
        "sub/deeper/10.png",
        "sub/1.png",
        "12.png",
        "13.png",
        "14.png",
        "15.png",
        "20.png",
    }
    assert report.n_loaded == len(dataset) == 9
    assert report.examples[NO_IMAGE] == ["4.json"]
    assert report.examples[aihub.NO_LABELS_FILE] == ["5.png"]
    assert sorted(report.examples[UNREADABLE_IMAGE]) == ["6.png", "7.png"]
    assert sorted(report.examples[MALFORMED_JSON]) == [
        "11.json",
        "18.json",
        "19.json",
        "8.json",
        "9.json",
    ]
    assert sorted(report.examples[NO_LABEL]) == ["16.json", "17.json"]
    assert sorted(report.blank_examples["face_shape"][UNKNOWN_VALUE]) == ["13.json", "20.json"]
    assert report.blank_examples["age"] == {AGE_OUT_OF_RANGE: ["14.json"]}
    assert MISSING_FIELD not in report.examples  # blank labels have examples of their own


@pytest.fixture
def one_of_each(tmp_path: Path) -> Path:
    """Three pictures that cannot be used and two kept with one label left blank."""
    root = tmp_path / "one_of_each"
    pair(root, 1, montage_json())  # fine
    pair(root, 2, "{not json")  # malformed JSON: left out
    write(root / "3.json", montage_json())  # no image: left out
    pair(root, 4, montage_json(), image=b"not a picture")  # unreadable image: left out
    pair(root, 5, montage_json(age=15))  # age out of range: kept, age blank
    pair(root, 6, montage_json(face="하트형"))  # unknown value: kept, face shape blank
    return root


LEFT_OUT = {MALFORMED_JSON: 1, NO_IMAGE: 1, UNREADABLE_IMAGE: 1}
LEFT_BLANK = {"age": {AGE_OUT_OF_RANGE: 1}, "face_shape": {UNKNOWN_VALUE: 1}}


def test_report_keeps_pictures_left_out_apart_from_labels_left_blank(one_of_each):
    dataset = aihub.load(one_of_each)
    report = dataset.report
    assert report.n_loaded == len(dataset) == 3
    assert dict(report.skipped) == LEFT_OUT and report.n_skipped == 3
    assert report.blank_counts() == LEFT_BLANK and report.n_blank == 2
    assert report.blank_examples == {
        "age": {AGE_OUT_OF_RANGE: ["5.json"]},
        "face_shape": {UNKNOWN_VALUE: ["6.json"]},
    }
    assert report.summary() == (
        "3 loaded from aihub; left out: 1 malformed JSON, 1 no image, 1 unreadable image; "
        "labels left blank: age 1 age out of range, face_shape 1 unknown value"
    )


def test_stats_json_and_text_keep_the_two_apart(one_of_each, capsys):
    from portrait_core.cli import main

    assert main(["stats", str(one_of_each), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n_images"] == 3
    assert stats["skipped"] == LEFT_OUT  # pictures only
    assert stats["blank_labels"] == LEFT_BLANK
    assert main(["stats", str(one_of_each)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "pictures left out: 1 malformed JSON, 1 no image, 1 unreadable image" in lines
    assert "labels left blank: age 1 age out of range, face_shape 1 unknown value" in lines


def test_undecodable_file_names_are_shown_as_escapes(tmp_path):
    name = os.fsdecode(b"7\xff.json")  # a name that is not UTF-8, as the file system gives it
    report = aihub.ImportReport(format="aihub")
    report.skip(NO_IMAGE, name)
    report.blank("age", AGE_OUT_OF_RANGE, name)
    assert report.examples[NO_IMAGE] == ["7\\xff.json"]
    assert report.blank_examples["age"][AGE_OUT_OF_RANGE] == ["7\\xff.json"]
    json.dumps(report.examples, ensure_ascii=False).encode("utf-8")  # printable


def test_aihub_labels_of_kept_records(aihub_tree):
    dataset = aihub.load(aihub_tree)
    full = {"gender": "male", "age": "30s", "face_shape": "oval", "hairstyle": "straight"}
    assert labels_of(dataset, aihub_tree / "1.png") == full
    assert labels_of(dataset, aihub_tree / "3.png") == {**full, "gender": "female", "age": "50s"}
    assert labels_of(dataset, aihub_tree / "sub/deeper/10.png") == {
        **full,
        "face_shape": "square",
        "hairstyle": "wavy",
    }
    assert labels_of(dataset, aihub_tree / "sub/1.png") == {**full, "gender": "female"}
    assert labels_of(dataset, aihub_tree / "12.png") == {**full, "gender": None}
    assert labels_of(dataset, aihub_tree / "13.png") == {**full, "face_shape": None}
    assert labels_of(dataset, aihub_tree / "14.png") == {**full, "age": None}
    assert labels_of(dataset, aihub_tree / "15.png") == {
        **full,
        "face_shape": None,
        "hairstyle": None,
    }
    assert labels_of(dataset, aihub_tree / "20.png") == {
        **full,
        "gender": "female",
        "face_shape": None,
    }


def test_aihub_table_is_absolute_sorted_and_typed(aihub_tree, monkeypatch):
    monkeypatch.chdir(aihub_tree.parent)
    dataset = aihub.load(Path(aihub_tree.name))  # a relative path in, absolute paths out
    paths = list(dataset.table["path"])
    assert all(isinstance(p, str) and os.path.isabs(p) and os.path.isfile(p) for p in paths)
    assert paths == sorted(paths)
    assert dataset.root.resolve() == aihub_tree.resolve()
    assert all(isinstance(dataset.table[k].dtype, pd.CategoricalDtype) for k in ATTRIBUTE_KEYS)


def test_aihub_prefers_png_when_one_number_has_two_pictures(tmp_path):
    pair(tmp_path, 1, montage_json())
    write(tmp_path / "1.jpg", JPG)
    dataset = aihub.load(tmp_path)
    assert list(dataset.table["path"]) == [str(tmp_path / "1.png")]


def test_aihub_accepts_a_jpg_picture(tmp_path):
    write(tmp_path / "2.json", montage_json())
    write(tmp_path / "2.jpg", JPG)
    dataset = aihub.load(tmp_path)
    assert list(dataset.table["path"]) == [str(tmp_path / "2.jpg")]


def test_aihub_tolerates_an_object_where_a_list_is_expected(tmp_path):
    doc = json.loads(montage_json(gender="F"))
    doc["info"] = doc["info"][0]
    pair(tmp_path, 1, json.dumps(doc, ensure_ascii=False))
    dataset = aihub.load(tmp_path)
    assert labels_of(dataset, tmp_path / "1.png")["gender"] == "female"
    assert not dataset.report.skipped and not dataset.report.blank_labels


def test_aihub_json_with_byte_order_mark(tmp_path):
    write(tmp_path / "1.json", "\ufeff" + montage_json())
    write(tmp_path / "1.png", PNG)
    dataset = aihub.load(tmp_path)
    assert dataset.report.n_loaded == 1 and not dataset.report.skipped
    assert not dataset.report.blank_labels


def test_aihub_examples_are_capped(tmp_path):
    for n in range(12):
        write(tmp_path / f"{n}.json", montage_json())
    report = aihub.load(tmp_path).report
    assert report.skipped[NO_IMAGE] == 12
    assert len(report.examples[NO_IMAGE]) == 5


def test_aihub_empty_folder_loads_nothing(tmp_path):
    dataset = aihub.load(tmp_path)
    assert len(dataset) == 0 and not dataset.report.skipped
    assert list(dataset.table.columns) == ["path", *ATTRIBUTE_KEYS, "age_years"]


def test_aihub_detect(tmp_path, aihub_tree):
    assert aihub.detect(aihub_tree)
    only_json = tmp_path / "only_json"
    write(only_json / "7.json", montage_json())  # labels without pictures still look like AI Hub
    assert aihub.detect(only_json)
    other_json = tmp_path / "other"
    write(other_json / "7.json", '{"name": "x"}')
    assert not aihub.detect(other_json)
    not_numbered = tmp_path / "words"
    write(not_numbered / "a.json", montage_json())
    write(not_numbered / "a.png", PNG)
    assert not aihub.detect(not_numbered)
    assert not aihub.detect(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# CSV manifest


MANIFEST_ROWS = [
    "path,gender,age,face_shape,hairstyle,notes",
    "imgs/a.png,male,20s,round,sports,ok",
    " imgs/b.png , female , 60+ , diamond , balding ,padded cells",
    "imgs/sub/c.png,male,35,,curly,age in years; face empty",
    "imgs/d.png,Male,15,oval,straight,case differs; age under 20",
    "imgs/missing.png,male,20s,round,sports,no such file",
    "imgs/bad.png,male,20s,round,sports,unreadable",
    "imgs/e.png,,,,,no labels",
    "imgs/f.png,male,20s",
    ",male,20s,round,sports,no path",
    "",
    "imgs/a.png,female,30s,long,wavy,listed twice",
    "imgs/g.png,female,30s,heart,wavy,unknown face",
]


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    root = tmp_path / "mine"
    for name in ("a", "b", "sub/c", "d", "e", "f", "g"):
        write(root / "imgs" / f"{name}.png", PNG)
    write(root / "imgs" / "bad.png", PNG[:20])
    write(root / "labels.csv", "\n".join(MANIFEST_ROWS) + "\n")
    write(root / "other.csv", "name,score\nx,1\n")  # a CSV without `path` is not a manifest
    return root


def test_manifest_counts_and_labels(manifest_dir):
    dataset = manifest.load(manifest_dir)
    report = dataset.report
    assert report.format == "csv manifest"
    assert dict(report.skipped) == {
        NO_IMAGE: 1,
        UNREADABLE_IMAGE: 1,
        NO_LABEL: 1,  # e
        BAD_ROW: 2,  # f (too few cells), the row without a path
        manifest.DUPLICATE_PATH: 1,
    }
    assert report.blank_counts() == {
        "gender": {UNKNOWN_VALUE: 1},  # d "Male"
        "age": {AGE_OUT_OF_RANGE: 1},  # d
        "face_shape": {MISSING_FIELD: 1, UNKNOWN_VALUE: 1},  # c empty; g "heart"
    }
    assert report.blank_examples["face_shape"][UNKNOWN_VALUE] == ["line 13: imgs/g.png"]
    assert report.n_loaded == len(dataset) == 5
    img = manifest_dir / "imgs"
    assert labels_of(dataset, img / "a.png") == {
        "gender": "male",
        "age": "20s",
        "face_shape": "round",
        "hairstyle": "sports",
    }
    assert labels_of(dataset, img / "b.png") == {
        "gender": "female",
        "age": "60+",
        "face_shape": "diamond",
        "hairstyle": "balding",
    }
    assert labels_of(dataset, img / "sub" / "c.png") == {
        "gender": "male",
        "age": "30s",
        "face_shape": None,
        "hairstyle": "curly",
    }
    assert labels_of(dataset, img / "d.png") == {
        "gender": None,
        "age": None,
        "face_shape": "oval",
        "hairstyle": "straight",
    }
    assert labels_of(dataset, img / "g.png")["face_shape"] is None
    assert report.examples[NO_IMAGE] == ["line 6: imgs/missing.png"]
    assert report.examples[manifest.DUPLICATE_PATH] == ["line 12: imgs/a.png"]
    assert dataset.root == manifest_dir


def test_manifest_folder_or_csv_file_give_the_same_table(manifest_dir):
    by_folder = manifest.load(manifest_dir)
    by_file = manifest.load(manifest_dir / "labels.csv")
    pd.testing.assert_frame_equal(by_folder.table, by_file.table)
    assert by_folder.report.skipped == by_file.report.skipped
    assert by_folder.report.blank_labels == by_file.report.blank_labels
    assert manifest.detect(manifest_dir) and manifest.detect(manifest_dir / "labels.csv")
    assert not manifest.detect(manifest_dir / "other.csv")


def test_manifest_with_some_columns_and_semicolons(tmp_path):
    write(tmp_path / "pics" / "x.jpg", JPG)
    write(tmp_path / "list.csv", "\ufeffPath;Hairstyle\npics/x.jpg;wavy\n")  # Excel-style
    dataset = manifest.load(tmp_path / "list.csv")
    assert labels_of(dataset, tmp_path / "pics" / "x.jpg") == {
        "gender": None,
        "age": None,
        "face_shape": None,
        "hairstyle": "wavy",
    }
    assert not dataset.report.skipped
    assert not dataset.report.blank_labels  # absent columns are not counted as blank


def test_manifest_path_may_lead_out_of_its_folder(tmp_path):
    write(tmp_path / "pictures" / "x.png", PNG)
    write(tmp_path / "lists" / "m.csv", "path,gender\n../pictures/x.png,female\n")
    dataset = manifest.load(tmp_path / "lists")
    assert list(dataset.table["path"]) == [str(tmp_path / "pictures" / "x.png")]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("file,gender\na.png,male\n", "no 'path' column (columns found: file, gender)"),
        ("", "empty"),
        ("path\na.png\n", "no label column"),
        (b"path,gender\n\xff\xfe.png,male\n", "not UTF-8"),
        ('path,gender\n"a.png,male\n', "not a readable CSV"),
    ],
)
def test_manifest_whole_file_problems_raise(tmp_path, content, problem):
    write(tmp_path / "a.png", PNG)
    csv_path = write(tmp_path / "m.csv", content)
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        manifest.load(csv_path)


def test_manifest_folder_needs_exactly_one_manifest(tmp_path):
    with pytest.raises(ValueError, match="no .csv file with a 'path' column"):
        manifest.load(tmp_path)
    assert not manifest.detect(tmp_path)
    write(tmp_path / "one.csv", "path,gender\n")
    write(tmp_path / "two.csv", "path,age\n")
    assert not manifest.detect(tmp_path)
    with pytest.raises(ValueError, match="several manifests"):
        manifest.load(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        manifest.load(tmp_path / "nowhere.csv")


# --------------------------------------------------------------------------------------------
# UTKFace


@pytest.fixture
def utk_dir(tmp_path: Path) -> Path:
    root = tmp_path / "UTKFace"
    write(root / "25_0_0_20170109150557335.jpg", JPG)
    write(root / "31_1_2_20170116174525125.jpg.chip.jpg", JPG)
    write(root / "5_1_0_20170109142408075.jpg.chip.jpg", JPG)  # a child: age out of range
    write(root / "130_0_0_20170109142408075.jpg", JPG)  # beyond MAX_AGE
    write(root / "40_2_0_20170110.jpg", JPG)  # gender code unknown
    write(root / "10_3_0_20170110.jpg", JPG)  # neither label usable
    write(root / "39_1_20170116174525125.jpg.chip.jpg", JPG)  # race missing: unparseable
    write(root / "selfie.jpg", JPG)  # unparseable
    write(root / "50_0_0_20170110.jpg", JPG[:20])  # truncated
    write(root / "part2" / "sub" / "61_0_1_20170110.jpg", JPG)  # nested
    write(root / "notes.txt", "not a picture, ignored")
    return root


def test_utkface_counts_and_labels(utk_dir):
    dataset = utkface.load(utk_dir)
    report = dataset.report
    assert report.format == "utkface"
    assert dict(report.skipped) == {
        utkface.UNPARSEABLE_NAME: 2,
        UNREADABLE_IMAGE: 1,
        NO_LABEL: 1,
    }
    assert report.blank_counts() == {
        "gender": {UNKNOWN_VALUE: 1},  # 40_2_...
        "age": {AGE_OUT_OF_RANGE: 2},  # 5_1_..., 130_0_...
    }
    assert report.n_loaded == len(dataset) == 6
    none2 = {"face_shape": None, "hairstyle": None}
    assert labels_of(dataset, utk_dir / "25_0_0_20170109150557335.jpg") == {
        "gender": "male",
        "age": "20s",
        **none2,
    }
    assert labels_of(dataset, utk_dir / "31_1_2_20170116174525125.jpg.chip.jpg") == {
        "gender": "female",
        "age": "30s",
        **none2,
    }
    assert labels_of(dataset, utk_dir / "5_1_0_20170109142408075.jpg.chip.jpg") == {
        "gender": "female",
        "age": None,
        **none2,
    }
    assert labels_of(dataset, utk_dir / "40_2_0_20170110.jpg") == {
        "gender": None,
        "age": "40s",
        **none2,
    }
    assert labels_of(dataset, utk_dir / "part2" / "sub" / "61_0_1_20170110.jpg") == {
        "gender": "male",
        "age": "60+",
        **none2,
    }
    assert sorted(report.examples[utkface.UNPARSEABLE_NAME]) == [
        "39_1_20170116174525125.jpg.chip.jpg",
        "selfie.jpg",
    ]


def years_of(dataset, path: Path) -> float | None:
    (years,) = dataset.table.loc[dataset.table["path"] == str(path), "age_years"]
    return None if pd.isna(years) else years


def test_each_loader_keeps_the_exact_age_behind_the_band(utk_dir, manifest_dir, tmp_path):
    """The years a source gives travel beside the band (soft age targets read them); a band
    given by name, or an age the schema leaves blank, has none."""
    utk = utkface.load(utk_dir)
    assert years_of(utk, utk_dir / "25_0_0_20170109150557335.jpg") == 25.0
    assert years_of(utk, utk_dir / "part2" / "sub" / "61_0_1_20170110.jpg") == 61.0
    assert years_of(utk, utk_dir / "5_1_0_20170109142408075.jpg.chip.jpg") is None  # under 20
    assert years_of(utk, utk_dir / "130_0_0_20170109142408075.jpg") is None  # out of range
    mine = manifest.load(manifest_dir)
    assert years_of(mine, manifest_dir / "imgs" / "sub" / "c.png") == 35.0  # "35"
    assert years_of(mine, manifest_dir / "imgs" / "a.png") is None  # "20s": a band's name
    assert years_of(mine, manifest_dir / "imgs" / "d.png") is None  # "15": under 20
    for age, years in ((45, 45.0), ("52", 52.0), (121, None), ("forty", None)):
        root = tmp_path / f"aihub-{age}"
        pair(root, 1, montage_json(age=age))
        assert years_of(aihub.load(root), root / "1.png") == years, age
    assert utk.table["age_years"].dtype == "float64"


def test_utkface_detect_needs_most_names_to_match(tmp_path):
    mostly = tmp_path / "mostly"
    for name in ("20_0_0_1.jpg", "21_1_0_2.jpg", "22_0_3_3.jpg.chip.jpg", "cover.jpg"):
        write(mostly / name, JPG)
    assert utkface.detect(mostly)
    half = tmp_path / "half"
    for name in ("20_0_0_1.jpg", "21_1_0_2.jpg", "a.jpg", "b.jpg"):
        write(half / name, JPG)
    assert not utkface.detect(half)
    assert not utkface.detect(tmp_path / "empty-or-missing")


# --------------------------------------------------------------------------------------------
# CelebA

CELEBA_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()


def celeba_row(name: str, **set_to_one: int) -> str:
    values = ["-1"] * len(CELEBA_NAMES)
    for column, value in set_to_one.items():
        values[CELEBA_NAMES.index(column)] = str(value)
    return name + " " + " ".join(f"{v:>2}" for v in values)  # the file pads with spaces


@pytest.fixture
def celeba_dir(tmp_path: Path) -> Path:
    root = tmp_path / "celeba"
    rows = [
        celeba_row("000001.jpg", Male=1, Straight_Hair=1, Oval_Face=1),
        celeba_row("000002.jpg", Wavy_Hair=1),
        celeba_row("000003.jpg", Male=1, Bald=1, Straight_Hair=1),  # contradictory hair
        celeba_row("000004.jpg"),  # no hair column set: not labelled, not counted
        celeba_row("000005.jpg", Male=1),  # listed, not present
        celeba_row("000006.jpg", Male=1).rsplit(" ", 1)[0],  # 39 values
        celeba_row("000007.jpg", Male=2),  # a value other than 1/-1
        celeba_row("000008.jpg", Male=1),  # unreadable picture
        celeba_row("000001.jpg", Male=-1),  # listed twice
        celeba_row("000009.jpg", Bald=1),  # in another subfolder
    ]
    header = f"{len(rows)}\n{' '.join(CELEBA_NAMES)} \n"  # the real file ends line 2 with a space
    write(root / celeba.ATTR_FILE, header + "\n".join(rows) + "\n")
    for n in (1, 3, 4):
        write(root / "img_align_celeba" / f"00000{n}.jpg", JPG)
    write(root / "celeba_hq" / "000001.jpg", PNG)  # a second copy: img_align_celeba wins
    write(root / "000002.jpg", JPG)  # beside the attribute file
    write(root / "img_align_celeba" / "000008.jpg", b"garbage")
    write(root / "extra" / "000009.jpg", JPG)
    return root


def test_celeba_counts_and_labels(celeba_dir):
    dataset = celeba.load(celeba_dir)
    report = dataset.report
    assert report.format == "celeba"
    assert dict(report.skipped) == {
        NO_IMAGE: 1,
        BAD_ROW: 3,
        UNREADABLE_IMAGE: 1,
    }
    assert report.blank_counts() == {"hairstyle": {UNKNOWN_VALUE: 1}}  # 000003: two styles
    assert report.blank_examples["hairstyle"][UNKNOWN_VALUE] == ["000003.jpg"]
    assert report.n_loaded == len(dataset) == 5
    aligned = celeba_dir / "img_align_celeba"
    assert labels_of(dataset, aligned / "000001.jpg") == {
        "gender": "male",
        "age": None,
        "face_shape": "oval",
        "hairstyle": "straight",
    }
    assert labels_of(dataset, celeba_dir / "000002.jpg") == {
        "gender": "female",
        "age": None,
        "face_shape": None,
        "hairstyle": "wavy",
    }
    assert labels_of(dataset, aligned / "000003.jpg")["hairstyle"] is None
    assert labels_of(dataset, aligned / "000004.jpg") == {
        "gender": "female",
        "age": None,
        "face_shape": None,
        "hairstyle": None,
    }
    assert labels_of(dataset, celeba_dir / "extra" / "000009.jpg")["hairstyle"] == "balding"
    assert report.examples[NO_IMAGE] == ["000005.jpg"]
    assert sorted(report.examples[BAD_ROW]) == [
        "line 11: 000001.jpg",
        "line 8: 000006.jpg",
        "line 9: 000007.jpg",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "picture count"),
        ("three\n" + " ".join(CELEBA_NAMES) + "\n", "picture count"),
        ("1\nMale Smiling\na.jpg 1 1\n", "lacks the attribute column"),
    ],
)
def test_celeba_bad_attribute_file_raises(tmp_path, text, problem):
    write(tmp_path / celeba.ATTR_FILE, text)
    assert celeba.detect(tmp_path)
    with pytest.raises(ValueError, match=problem):
        celeba.load(tmp_path)


# --------------------------------------------------------------------------------------------
# Format detection and the single entry point


def test_formats_are_ordered_most_specific_first():
    assert list(FORMATS) == ["celeba", "csv manifest", "aihub", "utkface"]
    for name, module in FORMATS.items():
        assert module.FORMAT == name and callable(module.detect) and callable(module.load)


def test_detect_and_load_each_format(aihub_tree, manifest_dir, utk_dir, celeba_dir):
    cases = [
        (aihub_tree, "aihub", 9),
        (manifest_dir, "csv manifest", 5),
        (manifest_dir / "labels.csv", "csv manifest", 5),
        (utk_dir, "utkface", 6),
        (celeba_dir, "celeba", 5),
    ]
    for path, name, n in cases:
        assert detect_format(path) == name, path
        dataset = load_dataset(str(path))  # a str is accepted too
        assert dataset.format == name and len(dataset) == n


def test_most_specific_format_wins(tmp_path):
    root = tmp_path / "mixed"
    pair(root, 1, montage_json())  # looks like AI Hub ...
    write(root / celeba.ATTR_FILE, "0\n" + " ".join(CELEBA_NAMES) + "\n")  # ... and CelebA
    assert detect_format(root) == "celeba"
    write(tmp_path / "m" / "m.csv", "path,gender\n1.png,male\n")
    pair(tmp_path / "m", 1, montage_json())  # a manifest beside AI Hub pairs
    assert detect_format(tmp_path / "m") == "csv manifest"


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.mkdir(),  # an empty folder
        lambda p: [write(p / f"photo{i}.jpg", JPG) for i in range(3)],  # pictures without labels
        lambda p: write(p / "notes.csv", "name,score\na,1\n"),  # a CSV that is no manifest
    ],
)
def test_unknown_folder_lists_the_formats(tmp_path, make):
    folder = tmp_path / "unknown"
    make(folder)
    with pytest.raises(UnknownFormat) as caught:
        load_dataset(folder)
    message = str(caught.value)
    assert str(folder) in message and "is not a folder" in message
    for name, module in FORMATS.items():
        assert f"- {name}: {module.DESCRIPTION}" in message
    assert isinstance(caught.value, ValueError)


def test_missing_path_and_stray_file_raise_unknown_format(tmp_path):
    with pytest.raises(UnknownFormat, match="does not exist") as caught:
        detect_format(tmp_path / "nowhere")
    assert accepted_formats() in str(caught.value)
    stray = write(tmp_path / "photo.png", PNG)
    with pytest.raises(UnknownFormat, match="is not a file Portrait Lab can read"):
        load_dataset(stray)
    not_a_manifest = write(tmp_path / "scores.csv", "name,score\na,1\n")
    with pytest.raises(UnknownFormat, match="a manifest needs a 'path' column"):
        load_dataset(not_a_manifest)


def test_accepted_formats_has_one_line_each():
    lines = accepted_formats().splitlines()
    assert [line.split(":")[0] for line in lines] == [f"- {name}" for name in FORMATS]
