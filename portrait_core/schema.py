"""The label schema: the one place that names attributes, classes and the raw AI Hub values.

Class index order matters: saved models, bar charts and comparisons with the 2022 study all
depend on it. Bump SCHEMA_VERSION whenever a class is added, removed or reordered, so that a
model trained under another order is refused instead of silently mislabelled.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Attribute:
    key: str  # head name in every model, column name in every table
    title: str  # what the app shows
    classes: tuple[str, ...]  # index order = softmax order
    ordinal: bool = False  # classes in a natural order (age bands): neighbours are near misses

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def index(self, class_name: str) -> int:
        return self.classes.index(class_name)


ATTRIBUTES: dict[str, Attribute] = {
    a.key: a
    for a in (
        Attribute("gender", "Gender", ("male", "female")),
        Attribute("age", "Age band", ("20s", "30s", "40s", "50s", "60+"), ordinal=True),
        Attribute(
            "face_shape",
            "Face shape",
            ("round", "long", "square", "oval", "inverted_triangle", "diamond"),
        ),
        Attribute("hairstyle", "Hairstyle", ("straight", "sports", "curly", "wavy", "balding")),
    )
}
ATTRIBUTE_KEYS: tuple[str, ...] = tuple(ATTRIBUTES)

# Raw AI Hub values (the "persona-based virtual person montage" set) -> our class names.
GENDER_RAW = {"M": "male", "F": "female"}
FACE_SHAPE_RAW = {
    "둥근형": "round",
    "긴형": "long",
    "사각형": "square",
    "계란형": "oval",
    "역삼각형": "inverted_triangle",
    "마름모형": "diamond",
}
HAIRSTYLE_RAW = {
    "직모(생머리)": "straight",
    "스포츠형": "sports",
    "곱슬머리": "curly",
    "웨이브형": "wavy",
    "탈모형": "balding",
}
# Inverse maps, for the synthetic generator that writes raw values.
RAW_GENDER = {v: k for k, v in GENDER_RAW.items()}
RAW_FACE_SHAPE = {v: k for k, v in FACE_SHAPE_RAW.items()}
RAW_HAIRSTYLE = {v: k for k, v in HAIRSTYLE_RAW.items()}

MIN_AGE = 20  # the study binned under-20s into "else"; we report them and leave the label missing
MAX_AGE = 120  # beyond this an "age" is a data error, not an old person


class UnknownValue(ValueError):
    """A raw value the schema has no class for (reported, never binned)."""


class AgeOutOfRange(ValueError):
    """An age below MIN_AGE or above MAX_AGE (reported, never binned)."""


def age_band(age: int | float) -> str:
    """Map integer years to an age band; raise AgeOutOfRange outside [MIN_AGE, MAX_AGE]."""
    if isinstance(age, bool) or not isinstance(age, (int, float)):
        raise UnknownValue(f"age {age!r} is not a number")
    if age != age or age < MIN_AGE or age > MAX_AGE:  # age != age catches NaN
        raise AgeOutOfRange(f"age {age!r} is outside {MIN_AGE}..{MAX_AGE}")
    decade = int(age) // 10
    return ATTRIBUTES["age"].classes[min(decade - 2, 4)]


AGE_BAND_YEARS = 10  # every age band but the open last one spans a decade


def age_position(years: int | float) -> float:
    """Where an age lies on the age bands' axis, in bands: the band's index plus how far into
    the band the age is, a year counted from its middle. 29 -> 0.95 (the end of the 20s), 30 ->
    1.05, 45 -> 2.55. The open last band keeps a decade's scale and stops short of the next
    index (120 -> 4.99), so int(position) is always the band's index. Raises like age_band."""
    band = ATTRIBUTES["age"].index(age_band(years))
    position = (int(years) + 0.5 - MIN_AGE) / AGE_BAND_YEARS
    return min(position, band + 0.99)


def _lookup(table: dict[str, str], raw: object, what: str) -> str:
    if not isinstance(raw, str) or raw.strip() not in table:
        raise UnknownValue(f"unknown {what} {raw!r}")
    return table[raw.strip()]


def gender_from_raw(raw: object) -> str:
    return _lookup(GENDER_RAW, raw, "gender")


def face_shape_from_raw(raw: object) -> str:
    return _lookup(FACE_SHAPE_RAW, raw, "face shape")


def hairstyle_from_raw(raw: object) -> str:
    return _lookup(HAIRSTYLE_RAW, raw, "hairstyle")


def parse_attributes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'gender,age' -> ('gender', 'age') in schema order; unknown keys name the valid ones."""
    items = text.split(",") if isinstance(text, str) else list(text)
    keys = [k.strip() for k in items if k.strip()]
    if not keys:
        raise ValueError(f"no attribute given; choose from {', '.join(ATTRIBUTE_KEYS)}")
    unknown = [k for k in keys if k not in ATTRIBUTES]
    if unknown:
        raise ValueError(
            f"unknown attribute {', '.join(unknown)}; choose from {', '.join(ATTRIBUTE_KEYS)}"
        )
    return tuple(k for k in ATTRIBUTE_KEYS if k in keys)
