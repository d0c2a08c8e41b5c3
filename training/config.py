"""Training recipes: TOML in, checked dataclasses out, hashed for the model card.

A recipe is one file. Its tables ([data], [model], [train], [augment], [schedule], [glsr])
configure the first stage; each ``[[stage]]`` after them names a further stage and the keys it
changes (``[stage.train]``, ``[stage.schedule]`` ...), on top of the stage before it. Every
stage after the first starts from the best weights of the one before, with a fresh optimiser
and schedule. The schema is the dataclasses below: each field's type is checked, and a
field's ``check`` (in its metadata) gives the one-line complaint for a bad value.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

from glsr_live.tokens import bar_steps

FREEZABLE = ("encoder", "decoder", "output")  # the model's parts a fine-tune may hold still


class ConfigError(ValueError):
    """A configuration the user must fix; the message is one line."""


def rule(test, wants: str, default=None, factory=None):
    """A field whose value must pass ``test`` ("must be {wants}" otherwise)."""
    extra = {"metadata": {"check": (test, wants)}}
    return field(default_factory=factory, **extra) if factory else field(default=default,
                                                                           **extra)


def positive(default):
    return rule(lambda v: v > 0, "positive", default)


def at_least(low, default):
    return rule(lambda v: v >= low, f"at least {low}", default)


@dataclass
class DataConfig:
    corpus: str | list[str] = "bach"  # bach, essen, nottingham, oneill or a folder; or a list
    track: str | None = None  # the track (by name) a folder's files take their melody from
    seq_len: int = at_least(1, 32)
    stride: int = at_least(1, 4)
    windows: Literal["stride", "bars"] = "stride"  # "bars": windows start on bar lines only
    max_shift: int | None = rule(lambda v: v is None or v >= 0, "a whole number >= 0")
    vocab: list[int] | None = rule(  # [low, high] fixed pitch range (a fine-tune keeps its base's)
        lambda v: v is None or (len(v) == 2 and 0 <= v[0] < v[1] <= 127),
        "[low, high] MIDI pitches")
    max_windows: int = at_least(0, 0)  # 0 = all; tests cap it
    metres: list[str] | None = None  # only tunes in these time signatures, e.g. ["3/4", "6/8"]

    def __post_init__(self) -> None:
        self.check_metres()
        names = self.corpus if isinstance(self.corpus, list) else [self.corpus]
        if not names or not all(names) or len(set(names)) != len(names):
            raise ConfigError("[data] corpus must name a corpus or folder, or a list of "
                              "different ones")
        reserved = [name for name in names if name.startswith("music21:")]
        if reserved:
            raise ConfigError(f"[data] corpus: {reserved[0]} is reserved for evaluation; train "
                              "on bach, essen, nottingham, oneill or your own folders")


    def check_metres(self) -> None:
        """The metres must share one bar length that divides the phrase into whole bars."""
        if not self.metres:
            return
        try:
            lengths = {bar_steps(metre) for metre in self.metres}
        except ValueError as error:
            raise ConfigError(f"[data] metres: {error}") from None
        if len(lengths) > 1 or self.seq_len % lengths.pop():
            raise ConfigError(f"[data] metres {self.metres} must have bars of one length that "
                              f"divides seq_len = {self.seq_len} (3/4 and 6/8: 12 steps)")


@dataclass
class ModelConfig:
    latent_dim: int = at_least(1, 12)
    embed_dim: int = at_least(1, 32)
    hidden: int = at_least(1, 512)
    layers: int = at_least(1, 2)
    dropout: float = rule(lambda v: 0 <= v < 1, "in [0, 1)", 0.2)
    bidirectional: bool = False  # encoder only; the paper does not say
    logvar_bias: float = -3.0  # start with narrow posteriors so z carries information early
    forget_bias: float = 0.0  # added to the LSTM forget gates: z must survive L steps
    z_every_step: bool = False  # the paper's decoder sees z at step 0 only
    step_inputs: bool = False  # the decoder also sees a one-hot of its step


@dataclass
class TrainConfig:
    batch_size: int = at_least(1, 256)
    lr: float = positive(1e-3)
    lr_final: float = at_least(0, 1e-4)  # cosine decay over max_steps
    weight_decay: float = at_least(0, 0.0)
    grad_clip: float = positive(1.0)
    max_steps: int = at_least(1, 50000)
    max_minutes: float = at_least(0, 0.0)  # 0 = no wall-clock limit
    decay_in_time: bool = False  # the decay also ends by max_minutes, if that comes first
    eval_every: int = at_least(1, 500)
    eval_windows: int = at_least(1, 4096)
    checkpoint_every: int = at_least(1, 250)
    patience: int = at_least(1, 8)  # evaluations without val improvement, after annealing
    warmup: int = at_least(0, 200)  # steps of linear learning-rate warm-up before the decay
    seed: int = 0
    freeze: list[str] = rule(  # parts that keep their weights: encoder, decoder, output
        lambda v: set(v) <= set(FREEZABLE), f"a list of {', '.join(FREEZABLE)}", factory=list)


@dataclass
class Ramp:
    """A weight over steps: 0 before ``start``, then linear to ``value`` over ``ramp`` steps."""

    value: float = at_least(0, 0.0)
    start: int = at_least(0, 0)
    ramp: int = at_least(0, 0)

    def at(self, step: int) -> float:
        if step < self.start or self.value == 0:
            return 0.0
        return self.value * min(1.0, (step - self.start + 1) / max(1, self.ramp))

    @property
    def end(self) -> int:
        """The first step at which the full value holds (0 for a term that is off)."""
        return self.start + self.ramp if self.value else 0


def ramp(value: float = 0.0, start: int = 0, length: int = 0):
    return field(default_factory=lambda: Ramp(value, start, length))


@dataclass
class ScheduleConfig:
    """The weight of each term of the objective (``objective.py``) over the steps: beta and
    glsr as the paper anneals them, every addition beyond the paper off."""

    beta: Ramp = ramp(1.0, 1000, 10000)  # KL weight
    glsr: Ramp = ramp(1.0, 500, 5000)  # the paper's GLSR weight (alpha)
    calibration: Ramp = ramp()  # mu placed where the axis's slope says the attribute belongs
    restoration: Ramp = ramp()  # an altered window, moved along its axes, decodes to the original
    anchor: Ramp = ramp()  # an altered window's code, off the axes, is pulled to the original's


@dataclass
class AugmentConfig:
    """Shares of each batch altered (``augment.py``), over the steps."""

    thinning: Ramp = ramp()  # rows that lose notes to rests
    stretching: Ramp = ramp()  # rows whose intervals widen or narrow about their mean pitch
    rhythm: Ramp = ramp()  # rows replaced by a hook's rhythm of themselves (``rhythm.py``)
    double_time: Ramp = ramp()  # rows replaced by two windows at twice the speed (``rhythm.py``)
    # stretched rows have their intervals scaled by k log-uniform in [1 / this, this]
    widest_stretch: float = at_least(1, 2.0)

    def __post_init__(self) -> None:
        for name in ("thinning", "stretching", "rhythm", "double_time"):
            if getattr(self, name).value > 1:
                raise ConfigError(f"[augment] {name} is a share of the batch: at most 1")
        if self.thinning.value + self.stretching.value > 1:
            raise ConfigError("[augment] thinning and stretching share the batch: at most 1 "
                              "in all")


@dataclass
class AttributeConfig:
    name: str
    dim: int = at_least(0, 0)
    mu: float | Literal["auto"] = rule(  # "auto": attribute range over the prior's range
        lambda v: v == "auto" or v > 0, '"auto" or a positive number', "auto")
    sigma: float | Literal["auto"] = rule(  # "auto": mu / 4
        lambda v: v == "auto" or v > 0, '"auto" or a positive number', "auto")
    sharpness: float | None = rule(  # this attribute's expectation temperature; None: [glsr]'s
        lambda v: v is None or v > 0, "positive")
    calibration_scale: float | None = rule(  # times the calibration weight; None: [glsr]'s
        lambda v: v is None or v > 0, "positive")

    def __post_init__(self) -> None:
        from .glsr import EXPECTATIONS

        if self.name not in EXPECTATIONS:
            raise ConfigError(f"[glsr] no differentiable expectation for attribute "
                              f"{self.name!r}; known: {', '.join(EXPECTATIONS)}")


@dataclass
class GLSRConfig:
    attributes: list[AttributeConfig] = field(
        default_factory=lambda: [AttributeConfig("notes", 0), AttributeConfig("register", 1)])
    batch: int = at_least(1, 64)  # rows of each batch the (costly) term is computed on
    axis_spread: float = at_least(0, 2.0)  # also regularise this far along each axis
    prior_range: float = positive(6.0)  # width of the prior's range the attributes spread over
    gradient: Literal["exact", "finite_difference"] = "exact"
    # finite_difference: half-width in z of the central difference. 1e-2 is the local slope; a
    # wide one is the secant slope over 2 * difference_step, which a confident decoder meets by
    # changing its argmax within the interval, not by softening everywhere
    difference_step: float = positive(1e-2)
    sharpness: float = positive(1.0)  # expectations under softmax(logits / sharpness)
    calibration_scale: float = positive(1.0)  # each axis's calibration weight, times this

    def __post_init__(self) -> None:
        dims = [a.dim for a in self.attributes]
        if len(set(dims)) != len(dims):
            raise ConfigError("[glsr] two attributes share one latent dim")
        if self.gradient == "exact" and self.difference_step != 1e-2:
            raise ConfigError("[glsr] difference_step needs gradient = 'finite_difference'")

    def option_of(self, name: str, option: str) -> float:
        """``name``'s own ``option`` (sharpness, calibration_scale), else [glsr]'s."""
        for attribute in self.attributes:
            if attribute.name == name and getattr(attribute, option) is not None:
                return getattr(attribute, option)
        return getattr(self, option)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    glsr: GLSRConfig = field(default_factory=GLSRConfig)
    regularize: bool = True  # False: the unregularised baseline (beta alone)

    def __post_init__(self) -> None:
        altered = self.augment.thinning.value > 0 or self.augment.stretching.value > 0
        for term in ("restoration", "anchor"):
            if getattr(self.schedule, term).value > 0 and not altered:
                raise ConfigError(f"[schedule] {term} needs altered windows: give [augment] "
                                  "thinning or stretching a value")
        for attribute in self.glsr.attributes:
            if attribute.dim >= self.model.latent_dim:
                raise ConfigError(f"attribute {attribute.name!r}: dim {attribute.dim} is "
                                  f"outside the latent size {self.model.latent_dim}")

    def weight(self, term: str, step: int) -> float:
        """The scheduled weight of ``term`` at ``step``; regularising terms are 0 without GLSR."""
        if term != "beta" and not self.regularize:
            return 0.0
        return getattr(self.schedule, term).at(step)

    def anneal_end(self) -> int:
        """The step from which every scheduled term holds its final value."""
        ramps = [getattr(self.schedule, f.name) for f in fields(ScheduleConfig)]
        return max(r.end for r in [*ramps, self.augment.thinning, self.augment.stretching])

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Recipe:
    """A recipe file's stages, in order: (name, config) each; one unnamed stage if it has no
    ``[[stage]]`` tables."""

    path: Path | None
    stages: list[tuple[str, Config]]
    init: str | None = None  # the model (name or folder) whose weights the first stage starts from

    @property
    def final(self) -> Config:
        return self.stages[-1][1]


# ---------------------------------------------------------------- building from TOML


def build(cls, values: Any, where: str):
    """A ``cls`` from a TOML table, every field's type and check enforced: one-line errors."""
    if not isinstance(values, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    given = {}
    for name, value in values.items():
        value = over_default(known[name], value)
        given[name] = converted(hints[name], value, f"[{where}] {name}")
        test, wants = known[name].metadata.get("check", (None, ""))
        if test is not None and not test(given[name]):
            raise ConfigError(f"[{where}] {name} must be {wants}, got {value!r}")
    try:
        return cls(**given)
    except TypeError as error:
        raise ConfigError(f"[{where}] {error}") from None


def over_default(spec, value: Any) -> Any:
    """A table given for a field whose default is a table (a schedule's Ramp): the keys it
    leaves out keep the default's; a bare number is its ``value``."""
    default = spec.default_factory() if callable(spec.default_factory) else None
    if not isinstance(default, Ramp):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = {"value": value}
    return {**asdict(default), **value} if isinstance(value, dict) else value


def converted(kind, value: Any, where: str) -> Any:
    """``value`` as the annotation ``kind`` wants it, or a ConfigError naming ``where``."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            try:
                return converted(option, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {describe(kind)}, got {value!r}")
    if typing.get_origin(kind) is Literal:
        if value in typing.get_args(kind):
            return value
        raise ConfigError(f"{where} must be {describe(kind)}, got {value!r}")
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [converted(item, v, where) for v in value]
    if is_dataclass(kind):
        return build(kind, value, where.strip("[]").replace("] ", "."))
    if kind is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where} must be unset")
    if kind is bool and isinstance(value, bool):
        return value
    if kind in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        if kind is int and not float(value).is_integer():
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        return kind(value)
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where} must be {describe(kind)}, got {value!r}")


def describe(kind) -> str:
    if typing.get_origin(kind) is Literal:
        return " or ".join(repr(v) for v in typing.get_args(kind))
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(describe(k) for k in typing.get_args(kind) if k is not type(None))
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
            "augment": AugmentConfig, "schedule": ScheduleConfig, "glsr": GLSRConfig}


def from_dict(raw: dict) -> Config:
    """A Config from one stage's tables (a TOML file without its ``[[stage]]`` tables, or a
    checkpoint's ``to_dict()``); a checkpoint of the layout before ``[augment]`` too."""
    raw = upgraded(raw)
    unknown = sorted(set(raw) - set(SECTIONS) - {"regularize"})
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(unknown)}")
    regularize = raw.get("regularize", True)
    if not isinstance(regularize, bool):
        raise ConfigError("regularize must be true or false")
    try:
        return Config(**{name: build(cls, raw.get(name, {}), name)
                         for name, cls in SECTIONS.items()}, regularize=regularize)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error).splitlines()[0]) from None


def upgraded(raw: dict) -> dict:
    """A checkpoint's config of the layout before ``[augment]``: its augmentations moved
    there, switches no recipe used dropped where they were off."""
    if "augment" in raw or not isinstance(raw.get("schedule"), dict) \
            or "thinning" not in raw["schedule"]:
        return raw
    raw = copy.deepcopy(raw)
    schedule, train = raw["schedule"], raw.get("train", {})
    raw["augment"] = {"thinning": schedule.pop("thinning"),
                      "stretching": schedule.pop("stretching", {}),
                      "widest_stretch": train.pop("widest_stretch", 2.0)}
    train.pop("first_stage", None)
    if schedule.get("alignment", {}).get("value", 0) == 0:
        schedule.pop("alignment", None)
    glsr = raw.get("glsr", {})
    if not glsr.get("straight_through", False):
        glsr.pop("straight_through", None)
    for attribute in glsr.get("attributes", []):
        for option in ("straight_through", "difference_step"):
            if attribute.get(option) is None:
                attribute.pop(option, None)
    return raw


def merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` laid over it, table by table (arrays replaced whole)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def recipe_from_dict(raw: dict, path: Path | None = None) -> Recipe:
    """The stages of one recipe: its tables, then each ``[[stage]]`` laid over the one before."""
    raw = dict(raw)
    stages_raw = raw.pop("stage", [])
    first = raw.pop("name", "stage-1")
    init = raw.pop("init", None)
    if init is not None and (not isinstance(init, str) or not init):
        raise ConfigError(f"init must name a model or its directory, got {init!r}")
    if not isinstance(stages_raw, list) or not all(isinstance(s, dict) for s in stages_raw):
        raise ConfigError("[[stage]] must be an array of tables")
    stages = [("", from_dict(raw))]
    current = raw
    for index, stage in enumerate(stages_raw, start=2):
        stage = dict(stage)
        name = stage.pop("name", f"stage-{index}")
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError(f"[[stage]] {index}: name must be a plain word, got {name!r}")
        current = merged(current, stage)
        try:
            stages.append((name, from_dict(current)))
        except ConfigError as error:
            raise ConfigError(f"stage {name!r}: {error}") from None
    if len(stages) > 1:
        stages[0] = (str(first), stages[0][1])
    names = [name for name, _ in stages]
    if len(set(names)) != len(names):
        raise ConfigError("two stages share one name")
    return Recipe(path, stages, init)


def load_recipe(path: str | Path) -> Recipe:
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such recipe file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return recipe_from_dict(raw, Path(path))


def load(path: str | Path) -> Config:
    """The final stage's config of a recipe file."""
    return load_recipe(path).final
