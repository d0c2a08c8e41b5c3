"""Load a model directory (encoder.onnx, decoder.onnx, model.json) and run it with onnxruntime.

The contract is in docs/DESIGN.md ("the model directory"). Everything that can be wrong with a
directory becomes one ``ModelError`` line; onnxruntime picks CUDA when it offers it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelError
from .tokens import Grid, Vocabulary, canonical

FORMAT_VERSION = 1
log = logging.getLogger("glsr_live.model")


@dataclass(frozen=True)
class AxisInfo:
    """A regularised attribute: its latent dim, gradient prior and range in the data."""

    name: str
    dim: int
    mu: float
    sigma: float
    data_range: dict[str, float]


@dataclass(frozen=True)
class LatentStats:
    """Per latent dim statistics of the training posterior means, (d,) arrays."""

    mean: np.ndarray
    std: np.ndarray
    p5: np.ndarray
    p95: np.ndarray


@dataclass(frozen=True)
class ModelInfo:
    vocab: Vocabulary
    grid: Grid
    latent_dim: int
    axes: dict[str, AxisInfo]
    latent: LatentStats
    raw: dict


def parse_model_json(raw: dict, where: str) -> ModelInfo:
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(f"{where}: model format version {version!r}, this glsr-live reads "
                         f"version {FORMAT_VERSION}; re-export the model with this version")
    try:
        vocab = Vocabulary.from_names(raw["vocabulary"])
        grid = Grid(int(raw["steps_per_beat"]), int(raw["beats_per_bar"]), int(raw["seq_len"]))
        latent_dim = int(raw["latent_dim"])
        axes = {a["name"]: AxisInfo(a["name"], int(a["dim"]), float(a["prior"]["mu"]),
                                    float(a["prior"]["sigma"]), dict(a["range"]))
                for a in raw["attributes"]}
        stats = raw["latent_stats"]
        latent = LatentStats(*(np.asarray(stats[k], dtype=np.float32)
                               for k in ("mean", "std", "p5", "p95")))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{where}: model.json is missing or has a bad field ({error})") from None
    if any(len(v) != latent_dim for v in (latent.mean, latent.std, latent.p5, latent.p95)):
        raise ModelError(f"{where}: latent_stats do not have latent_dim={latent_dim} entries")
    if any(not 0 <= axis.dim < latent_dim for axis in axes.values()):
        raise ModelError(f"{where}: an attribute's latent dim is outside 0..{latent_dim - 1}")
    return ModelInfo(vocab, grid, latent_dim, axes, latent, raw)


def read_model_json(directory: Path) -> ModelInfo:
    path = directory / "model.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{directory}: not a model directory (no model.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: not a JSON object")
    return parse_model_json(raw, str(path))


def choose_providers(available: list[str], prefer: str = "auto") -> list[str]:
    """CUDA first when onnxruntime offers it (and it is not refused), CPU always last."""
    if prefer != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(path: Path, providers: list[str], threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # one phrase is tiny: threads only add jitter
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # The arena keeps the largest batch's buffers for life (an offline sweep's 64-phrase decode
    # kept ~10 MB in the daemon); phrases are tiny, plain malloc costs nothing measurable.
    options.enable_cpu_mem_arena = False
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except FileNotFoundError:
        raise ModelError(f"{path}: missing") from None
    except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelError(f"{path}: not a usable ONNX model ({first_line[:160]})") from None


class Model:
    """Encoder and decoder sessions plus the model's metadata."""

    def __init__(self, directory: str | Path, device: str = "auto", threads: int = 1):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ModelError(f"{self.directory}: no such model directory")
        self.info = read_model_json(self.directory)
        import onnxruntime as ort

        providers = choose_providers(ort.get_available_providers(), device)
        self.encoder = open_session(self.directory / "encoder.onnx", providers, threads)
        self.decoder = open_session(self.directory / "decoder.onnx", providers, threads)
        self.provider = self.decoder.get_providers()[0]
        log.info("model %s on %s", self.directory, self.provider)
        self._check_shapes()

    def _check_shapes(self) -> None:
        """Run one phrase through both graphs, so a mismatched file fails at load, not live."""
        tokens = np.zeros((1, self.info.grid.seq_len), dtype=np.int64)
        try:
            mu, logvar = self.encode(tokens)
            logits = self.decode(mu)
        except Exception as error:  # onnxruntime errors for shape/type mismatches
            raise ModelError(f"{self.directory}: graphs do not match model.json "
                             f"({str(error).splitlines()[0][:160]})") from None
        expected = (1, self.info.grid.seq_len, self.info.vocab.size)
        if mu.shape != (1, self.info.latent_dim) or logits.shape != expected:
            raise ModelError(f"{self.directory}: graph shapes {mu.shape}, {logits.shape} do "
                             f"not match model.json ({self.info.latent_dim}, {expected})")

    def encode(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """tokens (N, L) int64 -> mu (N, d), logvar (N, d)."""
        mu, logvar = self.encoder.run(None, {"tokens": np.asarray(tokens, dtype=np.int64)})
        return mu, logvar

    def decode(self, z: np.ndarray) -> np.ndarray:
        """z (N, d) -> logits (N, L, K)."""
        return self.decoder.run(None, {"z": np.asarray(z, dtype=np.float32)})[0]

    def decode_tokens(self, z: np.ndarray, temperature: float = 0.0,
                      rng: np.random.Generator | None = None) -> np.ndarray:
        """(N, L) canonical tokens: argmax at temperature 0, else one sample per step."""
        return logits_to_tokens(self.decode(z), temperature, rng)


def offset_latent(z: np.ndarray, offsets: dict[str, float], info: ModelInfo) -> np.ndarray:
    """(d,) z moved along regularised axes; offsets are in units of each dim's training spread."""
    moved = np.array(z, dtype=np.float32, copy=True)
    for name, offset in offsets.items():
        if name not in info.axes:
            raise ModelError(f"the model has no regularised attribute {name!r} "
                             f"(it has: {', '.join(info.axes) or 'none'})")
        axis = info.axes[name]
        moved[axis.dim] += offset * float(info.latent.std[axis.dim])
    return moved


def morph_latent(a: np.ndarray, b: np.ndarray, amount: float, info: ModelInfo) -> np.ndarray:
    """(d,) A's code with its unregularised dims moved ``amount`` (0..1) of the way to B's;
    the regularised dims stay A's, so note count, register, ... hold through the morph."""
    held = np.zeros(info.latent_dim, dtype=bool)
    held[[axis.dim for axis in info.axes.values()]] = True
    mixed = (1.0 - amount) * np.asarray(a, np.float32) + amount * np.asarray(b, np.float32)
    return np.where(held, a, mixed).astype(np.float32)


@dataclass
class PhraseKeeper:
    """A model whose decodes keep a phrase's notes unless the model is sure of others.

    The decoder is factorised (each step's distribution depends on z and the step only), so
    each step can be chosen as the argmax of log p(x_t | z) + bonus * [x_t = phrase_t] at the
    phrase's onsets: ``bonus`` (the fidelity knob, in nats) 0 is the plain decode; large keeps
    every onset. A bonus on holds and rests too would win over every new onset ("more notes"
    would die); on onsets alone a knob moves its attribute and keeps the phrase's notes.
    Everything the engine decodes (knob tables, value searches, morph holds) goes through it.
    """

    model: object
    tokens: np.ndarray  # (L,) the phrase, canonical, in the model's vocabulary
    bonus: float

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def decode(self, z: np.ndarray) -> np.ndarray:
        """z (N, d) -> log-probabilities (N, L, K) with the phrase's onsets favoured."""
        logits = np.asarray(self.model.decode(z), dtype=np.float32)
        shifted = logits - logits.max(-1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        steps = np.flatnonzero(self.tokens >= 2)
        if self.bonus > 0 and len(steps):
            log_p[:, steps, self.tokens[steps]] += self.bonus
        return log_p

    def decode_tokens(self, z: np.ndarray, temperature: float = 0.0,
                      rng: np.random.Generator | None = None) -> np.ndarray:
        return logits_to_tokens(self.decode(z), temperature, rng)


def logits_to_tokens(logits: np.ndarray, temperature: float = 0.0,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """logits (N, L, K) -> canonical tokens (N, L)."""
    if temperature <= 0:
        tokens = logits.argmax(-1)
    else:
        rng = rng or np.random.default_rng()
        scaled = logits / temperature
        probs = np.exp(scaled - scaled.max(-1, keepdims=True))
        cumulative = np.cumsum(probs / probs.sum(-1, keepdims=True), axis=-1)
        draws = rng.random(logits.shape[:-1] + (1,))
        tokens = np.minimum((cumulative < draws).sum(-1), logits.shape[-1] - 1)
    return np.stack([canonical(row) for row in np.atleast_2d(tokens)])
