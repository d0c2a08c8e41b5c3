"""Training configuration: TOML in, validated dataclasses out, hashed for the model card."""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


class ConfigError(ValueError):
    """A configuration the user must fix; the message is one line."""


@dataclass
class DataConfig:
    corpus: str | list[str] = "bach"  # bach, essen, nottingham, oneill or a folder; or a list
    track: str | None = None
    seq_len: int = 32
    stride: int = 4
    windows: str = "stride"  # "bars": windows start on each melody's bar lines only
    max_shift: int | None = None  # transpose at most this many semitones each way
    vocab: list[int] | None = None  # [low, high] fixed pitch range (a fine-tune keeps its base's)
    max_windows: int = 0  # 0 = all; tests cap it


@dataclass
class ModelConfig:
    latent_dim: int = 12
    embed_dim: int = 32
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.2
    bidirectional: bool = False
    logvar_bias: float = -3.0
    forget_bias: float = 0.0
    z_every_step: bool = False  # the paper's decoder sees z at step 0 only
    step_inputs: bool = False  # the decoder also sees a one-hot of its step


@dataclass
class TrainConfig:
    batch_size: int = 256
    lr: float = 1e-3
    lr_final: float = 1e-4  # cosine decay over max_steps
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_steps: int = 50000
    max_minutes: float = 0.0  # 0 = no wall-clock limit
    eval_every: int = 500
    eval_windows: int = 4096
    checkpoint_every: int = 250
    patience: int = 8  # evaluations without val improvement, counted after annealing
    warmup: int = 200  # steps of linear learning-rate warm-up before the cosine decay
    seed: int = 0
    # a recipe (path from this file's folder) trained first, in OUT/first-stage, whose best.pt
    # this run starts from (as --init does): a staged model rebuilt by one command; that
    # recipe may name its own first stage
    first_stage: str = ""
    # stretched rows have their intervals scaled by k log-uniform in [1 / this, this]: the
    # range axis is taught as far as its stretches reach (see [schedule] stretching)
    widest_stretch: float = 2.0


@dataclass
class Ramp:
    """A schedule: 0 before ``start``, then linear to ``value`` over ``ramp`` steps."""

    value: float = 0.0
    start: int = 0
    ramp: int = 0

    def at(self, step: int) -> float:
        if step < self.start or self.value == 0:
            return 0.0
        return self.value * min(1.0, (step - self.start + 1) / max(1, self.ramp))

    @property
    def end(self) -> int:
        """The first step at which the full value holds (0 for a term that is off)."""
        return self.start + self.ramp if self.value else 0


# Every weighted term of the objective (and the thinned share of each batch), with defaults:
# beta and glsr as the paper anneals them, every addition beyond the paper off.
SCHEDULE_TERMS = {
    "beta": Ramp(1.0, 1000, 10000),  # KL weight
    "glsr": Ramp(1.0, 500, 5000),  # the paper's GLSR weight (alpha)
    "alignment": Ramp(),  # AR-VAE's ordering term on the posterior means
    "calibration": Ramp(),  # mu placed where the axis's slope says the attribute belongs
    "thinning": Ramp(),  # share of each batch whose windows lose notes to rests
    "stretching": Ramp(),  # share whose intervals widen or narrow about their mean pitch
    "restoration": Ramp(),  # an altered window, moved along its axes, decodes to the original
    "anchor": Ramp(),  # an altered window's code, off the axes, is pulled to the original's
}
AUGMENTATIONS = ("thinning", "stretching")  # shares of the batch, not loss weights


@dataclass
class AttributeConfig:
    name: str
    dim: int
    mu: float | str = "auto"  # "auto": attribute range over the prior's range (paper, App. B)
    sigma: float | str = "auto"  # "auto": mu / 4
    sharpness: float | None = None  # this attribute's expectation temperature; None: [glsr]'s
    difference_step: float | None = None  # this attribute's secant half-width; None: [glsr]'s
    straight_through: bool | None = None  # this attribute's choice; None: [glsr]'s
    calibration_scale: float | None = None  # times [schedule] calibration; None: [glsr]'s


@dataclass
class GLSRConfig:
    attributes: list[AttributeConfig] = field(
        default_factory=lambda: [AttributeConfig("notes", 0), AttributeConfig("register", 1)]
    )
    batch: int = 64  # samples of each batch the (costly) term is computed on
    axis_spread: float = 2.0  # also regularise this far along each axis from the posterior
    prior_range: float = 6.0  # width of the prior's range the attribute range is spread over
    gradient: str = "exact"  # or "finite_difference" (central differences)
    # finite_difference: half-width in z of the central difference. 1e-2 (float32-safe) is the
    # local slope; a wide one is the secant slope over 2 * difference_step, which a confident
    # decoder meets by changing its argmax within the interval, not by softening everywhere
    difference_step: float = 1e-2
    sharpness: float = 1.0  # expectations under softmax(logits / sharpness); < 1 nears argmax
    # finite_difference: the secant of the played (argmax) attribute, its gradient that of the
    # expectation (straight-through): the decoder cannot meet it by softening, only by playing
    straight_through: bool = False
    # each axis's calibration weight is [schedule] calibration times this (or its own): an
    # axis whose encoder spread hides its attribute (AR-VAE's interpretability) can be pinned
    calibration_scale: float = 1.0

    def option_of(self, name: str, option: str):
        """``name``'s own ``option`` (sharpness, difference_step, straight_through,
        calibration_scale) where its table sets one, else [glsr]'s."""
        for attribute in self.attributes:
            if attribute.name == name and getattr(attribute, option) is not None:
                return getattr(attribute, option)
        return getattr(self, option)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    glsr: GLSRConfig = field(default_factory=GLSRConfig)
    schedule: dict[str, Ramp] = field(
        default_factory=lambda: {k: Ramp(**asdict(v)) for k, v in SCHEDULE_TERMS.items()})
    regularize: bool = True

    def weight(self, term: str, step: int) -> float:
        """The scheduled weight of ``term`` at ``step``; regularising terms are 0 without GLSR."""
        if term != "beta" and term not in AUGMENTATIONS and not self.regularize:
            return 0.0
        return self.schedule[term].at(step)

    def anneal_end(self) -> int:
        """The step from which every scheduled term holds its final value."""
        return max(r.end for r in self.schedule.values())

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(unknown)}")
    defaults = cls() if cls is not AttributeConfig else None
    if cls is AttributeConfig:
        check_attribute_values(values, where)
    for name, value in values.items():
        expected = type(getattr(defaults, name)) if defaults is not None else None
        if expected in (int, float) and (isinstance(value, bool)
                                         or not isinstance(value, (int, float))):
            raise ConfigError(f"[{where}] {name} must be a number, got {value!r}")
        if expected is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"[{where}] {name} must be an integer, got {value!r}")
        if expected is bool and not isinstance(value, bool):
            raise ConfigError(f"[{where}] {name} must be true or false, got {value!r}")
    converted = {k: int(v) if defaults is not None and type(getattr(defaults, k)) is int else v
                 for k, v in values.items()}
    try:
        return cls(**converted)
    except TypeError as error:
        raise ConfigError(f"[{where}] {error}") from None


def _glsr(values: dict) -> GLSRConfig:
    values = dict(values)
    attributes = values.pop("attributes", None)
    config = _build(GLSRConfig, values, "glsr")
    if attributes is not None:
        if not isinstance(attributes, list):
            raise ConfigError("[glsr] attributes must be an array of tables")
        config.attributes = [_build(AttributeConfig, a, "glsr.attributes") for a in attributes]
    if config.sharpness <= 0:
        raise ConfigError("[glsr] sharpness must be positive")
    if config.calibration_scale <= 0:
        raise ConfigError("[glsr] calibration_scale must be positive")
    for attribute in config.attributes:
        check_attribute_option(attribute, "sharpness")
        check_attribute_option(attribute, "difference_step")
        check_attribute_option(attribute, "calibration_scale")
        for option in ("difference_step", "straight_through"):
            if config.gradient == "exact" and getattr(attribute, option) is not None:
                raise ConfigError(f"[glsr.attributes] {option} of {attribute.name!r} needs "
                                  "gradient = 'finite_difference'")
        if attribute.straight_through is not None and not isinstance(attribute.straight_through,
                                                                      bool):
            raise ConfigError(f"[glsr.attributes] straight_through of {attribute.name!r} must "
                              f"be true or false, got {attribute.straight_through!r}")
    if config.gradient not in ("exact", "finite_difference"):
        raise ConfigError("[glsr] gradient must be 'exact' or 'finite_difference'")
    if config.difference_step <= 0:
        raise ConfigError("[glsr] difference_step must be positive")
    if config.gradient == "exact" and config.difference_step != GLSRConfig.difference_step:
        raise ConfigError("[glsr] difference_step needs gradient = 'finite_difference'")
    if not isinstance(config.straight_through, bool):
        raise ConfigError("[glsr] straight_through must be true or false")
    if config.gradient == "exact" and config.straight_through:
        raise ConfigError("[glsr] straight_through needs gradient = 'finite_difference'")
    from .glsr import EXPECTATIONS

    for attribute in config.attributes:
        if attribute.name not in EXPECTATIONS:
            raise ConfigError(f"[glsr] no differentiable expectation for attribute "
                              f"{attribute.name!r}; known: {', '.join(EXPECTATIONS)}")
    dims = [a.dim for a in config.attributes]
    if len(set(dims)) != len(dims):
        raise ConfigError("[glsr] two attributes share one latent dim")
    return config


def check_attribute_option(attribute: AttributeConfig, option: str) -> None:
    """An attribute's own ``option`` (sharpness, difference_step, calibration_scale) is unset
    or positive."""
    value = getattr(attribute, option)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or value <= 0):
        raise ConfigError(f"[glsr.attributes] {option} of {attribute.name!r} must be "
                          f"a positive number, got {value!r}")


def check_attribute_values(values: dict, where: str) -> None:
    """mu and sigma are "auto" or a positive number."""
    for name in ("mu", "sigma"):
        value = values.get(name, "auto")
        if value == "auto":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"[{where}] {name} must be \"auto\" or a positive number, "
                              f"got {value!r}")


def _schedule(values: dict) -> dict[str, Ramp]:
    if not isinstance(values, dict):
        raise ConfigError("[schedule] must be a table")
    unknown = sorted(set(values) - set(SCHEDULE_TERMS))
    if unknown:
        raise ConfigError(f"unknown term(s) in [schedule]: {', '.join(unknown)}; known: "
                          f"{', '.join(SCHEDULE_TERMS)}")
    schedule = {}
    for term, default in SCHEDULE_TERMS.items():
        given = values.get(term, {})
        if isinstance(given, (int, float)) and not isinstance(given, bool):
            given = {"value": given}  # a bare number: that weight from step 0
        merged = {**asdict(default), **given} if isinstance(given, dict) else given
        ramp = _build(Ramp, merged, f"schedule.{term}")
        if ramp.value < 0 or ramp.start < 0 or ramp.ramp < 0:
            raise ConfigError(f"[schedule] {term}: value, start and ramp must be >= 0")
        schedule[term] = ramp
    for term in AUGMENTATIONS:
        if schedule[term].value > 1:
            raise ConfigError(f"[schedule] {term} is a share of the batch: at most 1")
    if sum(schedule[term].value for term in AUGMENTATIONS) > 1:
        raise ConfigError("[schedule] thinning and stretching share the batch: at most 1 in all")
    return schedule


def from_dict(raw: dict) -> Config:
    unknown = sorted(set(raw) - set(SECTIONS) - {"glsr", "schedule", "regularize"})
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(unknown)}")
    config = Config(**{name: _build(cls, raw.get(name, {}), name) for name, cls in
                       SECTIONS.items()})
    config.glsr = _glsr(raw.get("glsr", {}))
    config.schedule = _schedule(raw.get("schedule", {}))
    config.regularize = bool(raw.get("regularize", True))
    altered = any(config.schedule[term].value > 0 for term in AUGMENTATIONS)
    for term in ("restoration", "anchor"):
        if config.schedule[term].value > 0 and not altered:
            raise ConfigError(f"[schedule] {term} needs altered windows: give thinning or "
                              "stretching a value")
    for section, name in (("train", "batch_size"), ("train", "max_steps"), ("glsr", "batch"),
                          ("data", "seq_len"), ("data", "stride"), ("model", "latent_dim")):
        if getattr(getattr(config, section), name) < 1:
            raise ConfigError(f"[{section}] {name} must be at least 1")
    check_data(config.data)
    if config.train.widest_stretch < 1:
        raise ConfigError("[train] widest_stretch must be at least 1 (1: no stretch), got "
                          f"{config.train.widest_stretch!r}")
    if not isinstance(config.train.first_stage, str):
        raise ConfigError("[train] first_stage must be a recipe's path, got "
                          f"{config.train.first_stage!r}")
    for attribute in config.glsr.attributes:
        if not 0 <= attribute.dim < config.model.latent_dim:
            raise ConfigError(f"attribute {attribute.name!r}: dim {attribute.dim} is outside "
                              f"the latent size {config.model.latent_dim}")
    return config


def check_data(data: DataConfig) -> None:
    """corpus is a name or folder, or a non-empty list of them; windows and max_shift valid."""
    corpus = data.corpus if isinstance(data.corpus, list) else [data.corpus]
    if not corpus or not all(isinstance(c, str) and c for c in corpus):
        raise ConfigError("[data] corpus must be a corpus name or folder, or a list of them")
    if len(set(corpus)) != len(corpus):
        raise ConfigError("[data] corpus names one source twice")
    reserved = [c for c in corpus if c.startswith("music21:")]
    if reserved:
        raise ConfigError(f"[data] corpus: {reserved[0]} is reserved for evaluation; train on "
                          "bach, essen, nottingham, oneill or your own folders")
    if data.vocab is not None and not (
            isinstance(data.vocab, list) and len(data.vocab) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in data.vocab)
            and 0 <= data.vocab[0] < data.vocab[1] <= 127):
        raise ConfigError(f"[data] vocab must be [low, high] MIDI pitches, got {data.vocab!r}")
    if data.windows not in ("stride", "bars"):
        raise ConfigError(f"[data] windows must be 'stride' or 'bars', got {data.windows!r}")
    if data.max_shift is not None and (isinstance(data.max_shift, bool)
                                       or not isinstance(data.max_shift, int)
                                       or data.max_shift < 0):
        raise ConfigError(f"[data] max_shift must be a whole number >= 0, got {data.max_shift!r}")


def load(path: str | Path) -> Config:
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return from_dict(raw)
