"""A sweep's search space: which settings Optuna chooses for each trial, and from what.

One shape everywhere: a model's default (`space` in models/catalog.py), a SPACE file (YAML or
JSON) and the sweep folder's space.json, which is itself a valid SPACE file:

    lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # a range, sampled evenly on a log scale
    batch_size: [16, 32, 64]                      # a choice
    unfreeze: {low: 0, high: 40, step: 10}        # whole numbers when low, high and step are
    dropout: {low: 0.0, high: 0.5}                # a range of real numbers
    epochs: 10                                    # one value: the same for every trial

Names are TrainConfig's settings (but those the sweep itself gives: data, model, attributes,
seed, split, out) and the model's builder options. All of it is checked here, before TensorFlow
loads: an unknown name (the message lists the valid ones), a range whose low is not below its
high, a log range from 0, and every value a trial could get that TrainConfig or the model would
refuse (the ends of each range, each choice). Neither Optuna nor TensorFlow is imported here: a
trial is anything with Optuna's suggest_* methods.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path

from portrait_core.models.catalog import get_info
from portrait_core.training.config import TrainConfig, make_config

# Given by the sweep, not chosen per trial: seed and split pick the validation pictures, which
# must be the same for every trial, or their scores would not compare.
SWEEP_SETTINGS = ("data", "model", "attributes", "preset", "options", "out", "seed", "split")
RANGE_KEYS = ("low", "high", "log", "step")
# The catalogue does not type builder options; this is the one that takes real numbers.
REAL_OPTIONS = ("dropout",)
Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Param:
    """One entry of a space: a choice, a range or a fixed value."""

    name: str
    kind: str  # "choice", "range" or "fixed"
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    integer: bool = False  # a range of whole numbers
    value: Scalar = None  # a fixed value

    @property
    def searched(self) -> bool:
        return self.kind != "fixed"

    def candidates(self) -> list:
        """The values to check: every choice, both ends of a range, the fixed value."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "range":
            return [self.low, self.high]
        return [self.value]

    def suggest(self, trial):
        """This parameter's value for an Optuna trial (recorded in the trial by Optuna)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


def parameter_names(model: str) -> list[str]:
    """What a space may name for `model`: training settings, then the model's options."""
    settings = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in SWEEP_SETTINGS]
    return settings + list(get_info(model).options)


def default_space(model: str) -> dict:
    """The catalogue's space for `model` (a copy: the caller may change it)."""
    return copy.deepcopy(dict(get_info(model).space))


def read_space(path: str | Path) -> dict:
    """A SPACE file's mapping. YAML (JSON is read by the same parser, being nearly YAML)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"space file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"space file {path} cannot be read ({exc})") from None
    return parse_space_text(text, str(path))


def parse_space_text(text: str, where: str = "the space") -> dict:
    """A space written as YAML or JSON text (a file's, or the Sweep form's text box)."""
    import yaml

    try:
        raw = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not YAML"
        raise ValueError(f"{where} is not valid YAML or JSON ({problem}{at})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must map parameter names to values, e.g. 'lr: [0.001, 0.01]'")
    return raw


def _loader():
    """PyYAML's SafeLoader, but reading 1e-4 as a number: YAML 1.1 wants 1.0e-4, and a
    learning rate read as the text '1e-4' would be refused with a puzzling message."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    number = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", number, list("-+0123456789."))
    return Loader


def space_text(space: dict) -> str:
    """A space as YAML, for the Sweep form and the README (the order kept)."""
    import yaml

    return yaml.safe_dump(space, sort_keys=False, default_flow_style=None)


def parse(space: dict, model: str) -> list[Param]:
    """The entries of a space, shapes checked; raises ValueError naming the entry at fault."""
    valid = parameter_names(model)
    params = []
    for name, spec in space.items():
        if name not in valid:
            given = "the sweep gives it" if name in SWEEP_SETTINGS else "unknown parameter"
            raise ValueError(
                f"space: {name!r}: {given}; {model}'s parameters are {', '.join(valid)}"
            )
        params.append(_param(name, spec))
    if not any(p.searched for p in params):
        raise ValueError("space: nothing is searched; give at least one list or range")
    return params


def _param(name: str, spec) -> Param:
    where = f"space: {name}"
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"{where}: an empty list leaves nothing to choose")
        if not all(_is_scalar(c) for c in spec):
            raise ValueError(f"{where}: choices must be numbers, words, true/false or null")
        if len({json.dumps(c) for c in spec}) < len(spec):
            raise ValueError(f"{where}: a choice is listed twice")
        return Param(name, "choice", choices=tuple(spec))
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(RANGE_KEYS))
        if unknown or "low" not in spec or "high" not in spec:
            what = f"has {', '.join(map(str, unknown))}" if unknown else "lacks low or high"
            raise ValueError(f"{where}: a range {what}; it takes {', '.join(RANGE_KEYS)}")
        low, high, step = spec["low"], spec["high"], spec.get("step")
        log = spec.get("log", False)
        for key, value in (("low", low), ("high", high), ("step", step)):
            if value is not None and not _is_number(value):
                raise ValueError(f"{where}: {key} must be a number, not {value!r}")
        if not isinstance(log, bool):
            raise ValueError(f"{where}: log must be true or false, not {log!r}")
        if not low < high:
            raise ValueError(f"{where}: low ({low}) must be below high ({high})")
        if log and low <= 0:
            raise ValueError(f"{where}: a log range must start above 0, not at {low}")
        if step is not None and step <= 0:
            raise ValueError(f"{where}: step must be above 0, not {step}")
        integer = name not in _real_names() and all(
            isinstance(v, int) for v in (low, high, step) if v is not None
        )
        if log and step is not None and not (integer and step == 1):
            raise ValueError(f"{where}: a log range takes no step (Optuna samples it freely)")
        return Param(name, "range", low=low, high=high, log=log, step=step, integer=integer)
    if _is_scalar(spec):
        return Param(name, "fixed", value=spec)
    raise ValueError(f"{where}: give a list (a choice), a range {{low, high}} or one value")


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _real_names() -> set[str]:
    """Settings of real numbers: a range of them is never rounded to whole numbers."""
    hints = typing.get_type_hints(TrainConfig)
    reals = {name for name, hint in hints.items() if float in (typing.get_args(hint) or (hint,))}
    return reals | set(REAL_OPTIONS)


def check_space(space: dict, base: dict) -> list[Param]:
    """Every entry of `space` parsed, and every value a trial could get tried on TrainConfig.

    base: the sweep's own make_config keywords (data, model, attributes, out, seed). Raises
    ValueError saying which entry and why; returns the entries.
    """
    model = base["model"]
    params = parse(space, model)
    fixed = {p.name: p.value for p in params if not p.searched}
    allowed = get_info(model).option_values
    config_for(base, fixed)  # the fixed values together
    for p in params:
        for value in p.candidates():
            if p.name in allowed and value not in allowed[p.name]:
                raise ValueError(
                    f"space: {p.name}: {value!r} is not one of {model}'s "
                    f"{', '.join(allowed[p.name])}"
                )
            try:
                config = config_for(base, {**fixed, p.name: value})
                TrainConfig.from_dict(config.to_dict())  # types too: augment must be true/false
            except ValueError as exc:
                raise ValueError(f"space: {p.name}: {exc}") from None
    return params


def config_for(base: dict, values: dict) -> TrainConfig:
    """A trial's TrainConfig: the model's default preset, the sweep's own settings, then the
    trial's values (builder options among them go to `options`)."""
    options_named = set(get_info(base["model"]).options)
    options = {k: v for k, v in values.items() if k in options_named}
    settings = {k: v for k, v in values.items() if k not in options_named}
    given = {k: v for k, v in base.items() if k not in ("data", "model")}
    return make_config(base["data"], base["model"], "default", **given, **settings, options=options)


def sample(trial, params: list[Param]) -> dict:
    """A trial's values: each searched entry suggested through the trial, the fixed ones as they
    are (Optuna records only the searched ones as the trial's params)."""
    return {p.name: p.suggest(trial) if p.searched else p.value for p in params}
