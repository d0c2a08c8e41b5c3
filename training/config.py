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
    corpus: str = "bach"
    track: str | None = None
    seq_len: int = 32
    stride: int = 4
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
    seed: int = 0
    thin_fraction: float = 0.0  # share of each batch whose windows lose notes to rests


@dataclass
class AnnealConfig:
    beta_max: float = 1.0
    beta_start: int = 1000
    beta_steps: int = 10000
    alpha_max: float = 1.0
    alpha_start: int = 500
    alpha_steps: int = 5000


@dataclass
class AttributeConfig:
    name: str
    dim: int
    mu: float | str = "auto"  # "auto": attribute range over the prior's range (paper, App. B)
    sigma: float | str = "auto"  # "auto": mu / 4


@dataclass
class GLSRConfig:
    attributes: list[AttributeConfig] = field(
        default_factory=lambda: [AttributeConfig("notes", 0), AttributeConfig("register", 1)]
    )
    batch: int = 64  # samples of each batch the (costly) term is computed on
    axis_spread: float = 2.0  # also regularise this far along each axis from the posterior
    prior_range: float = 6.0  # width of the prior's range the attribute range is spread over
    gradient: str = "exact"  # or "finite_difference" (central, float32-safe step 1e-2)
    sharpness: float = 1.0  # expectations under softmax(logits / sharpness); < 1 nears argmax
    encoder_alignment: float = 0.0  # weight of AR-VAE's ordering term on mu (0: GLSR alone)
    encoder_calibration: float = 0.0  # weight of the term placing mu where the axis's slope says
    restoration: float = 0.0  # weight of decoding a thinned window, moved up its axes, back whole
    content_anchor: float = 0.0  # pulls a thinned window's code, off the axes, to the whole's


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    anneal: AnnealConfig = field(default_factory=AnnealConfig)
    glsr: GLSRConfig = field(default_factory=GLSRConfig)
    regularize: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
            "anneal": AnnealConfig}


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(unknown)}")
    defaults = cls() if cls is not AttributeConfig else None
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
    for name in ("encoder_alignment", "encoder_calibration", "restoration", "content_anchor"):
        if getattr(config, name) < 0:
            raise ConfigError(f"[glsr] {name} must be >= 0")
    if config.sharpness <= 0:
        raise ConfigError("[glsr] sharpness must be positive")
    if config.gradient not in ("exact", "finite_difference"):
        raise ConfigError("[glsr] gradient must be 'exact' or 'finite_difference'")
    from .glsr import EXPECTATIONS

    for attribute in config.attributes:
        if attribute.name not in EXPECTATIONS:
            raise ConfigError(f"[glsr] no differentiable expectation for attribute "
                              f"{attribute.name!r}; known: {', '.join(EXPECTATIONS)}")
    dims = [a.dim for a in config.attributes]
    if len(set(dims)) != len(dims):
        raise ConfigError("[glsr] two attributes share one latent dim")
    return config


def from_dict(raw: dict) -> Config:
    unknown = sorted(set(raw) - set(SECTIONS) - {"glsr", "regularize"})
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(unknown)}")
    config = Config(**{name: _build(cls, raw.get(name, {}), name) for name, cls in
                       SECTIONS.items()})
    config.glsr = _glsr(raw.get("glsr", {}))
    config.regularize = bool(raw.get("regularize", True))
    if not 0 <= config.train.thin_fraction <= 1:
        raise ConfigError("[train] thin_fraction must be between 0 and 1")
    for name in ("restoration", "content_anchor"):
        if getattr(config.glsr, name) > 0 and config.train.thin_fraction == 0:
            raise ConfigError(f"[glsr] {name} needs thinned windows: set [train] thin_fraction > 0")
    for attribute in config.glsr.attributes:
        if not 0 <= attribute.dim < config.model.latent_dim:
            raise ConfigError(f"attribute {attribute.name!r}: dim {attribute.dim} is outside "
                              f"the latent size {config.model.latent_dim}")
    return config


def load(path: str | Path) -> Config:
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return from_dict(raw)
