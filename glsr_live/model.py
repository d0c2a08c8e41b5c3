"""Load a model directory (encoder.onnx, decoder.onnx, model.json) and run it with onnxruntime.

The contract is in docs/DESIGN.md ("the model directory"). Everything that can be wrong with a
directory becomes one ``ModelError`` line; onnxruntime picks CUDA when it offers it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .attributes import compute
from .errors import ModelError
from .tokens import HOLD, Grid, Vocabulary, bar_steps, canonical, declared_metres, plays

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

    @property
    def metres(self) -> list[str]:
        """The time signatures it was trained on (``declared_metres``)."""
        return declared_metres(self.raw)

    @property
    def metre(self) -> str:
        """Its metres as one label: '4/4', '3/4, 6/8'."""
        return ", ".join(self.metres)

    def plays_metre(self, metre: str) -> bool:
        """Whether phrases in ``metre`` fit this model's grid: its own, and for a 4/4 model
        2/2 (the same bar) and 2/4 (two of its bars to one)."""
        return plays(self.metres, metre)


def check_metres(metres, grid: Grid) -> None:
    """ValueError unless ``metres`` (None, or a list of known time signatures) have the grid's
    bar length."""
    if metres is None:
        return
    if not isinstance(metres, list) or not metres:
        raise ValueError("metres must be a list of time signatures")
    if any(bar_steps(metre) != grid.steps_per_bar for metre in metres):
        raise ValueError(f"metres {metres} do not have bars of {grid.steps_per_bar} steps")


def parse_model_json(raw: dict, where: str) -> ModelInfo:
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(f"{where}: model format version {version!r}, this glsr-live reads "
                         f"version {FORMAT_VERSION}; re-export the model with this version")
    try:
        vocab = Vocabulary.from_names(raw["vocabulary"])
        grid = Grid(int(raw["steps_per_beat"]), int(raw["beats_per_bar"]), int(raw["seq_len"]))
        check_metres(raw.get("metres"), grid)
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


REFINE_CODES = 256  # codes tried for a phrase: its posterior mean and draws around it
REFINE_SPREAD = 3.0  # the draws' spread, in the posterior's standard deviations


def refined_code(model, tokens: np.ndarray, mu: np.ndarray, logvar: np.ndarray,
                 count: int = REFINE_CODES, spread: float = REFINE_SPREAD) -> np.ndarray:
    """(d,) the code whose decode is closest to the phrase ``tokens`` (L,): of ``mu`` and
    ``count - 1`` codes drawn around it at ``spread`` posterior deviations (seeded by the
    phrase, so the same phrase always gets the same code), the one whose argmax keeps most
    of the phrase's non-hold steps, the likelier phrase on a tie. One batched decode.

    The encoder's mean is a guess: a code nearby often decodes the phrase better, and every
    knob move starts from it.
    """
    seed = int.from_bytes(hashlib.sha1(np.asarray(tokens, np.int64).tobytes()).digest()[:8],
                          "little")
    noise = np.random.default_rng(seed).standard_normal((count - 1, len(mu)))
    codes = np.vstack([mu, mu + spread * np.exp(0.5 * logvar) * noise]).astype(np.float32)
    logits = np.asarray(model.decode(codes), dtype=np.float32)  # (count, L, K)
    decoded = logits_to_tokens(logits)
    kept = ((decoded == tokens) & (tokens != HOLD)).sum(1)  # (count,)
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    likelihood = log_p[:, np.arange(len(tokens)), tokens].sum(1)  # (count,)
    best = np.lexsort((-np.arange(count), likelihood, kept))[-1]  # mu first on a full tie
    return codes[best]


EDIT_BONUSES = (8.0, 4.0, 2.0, 1.0)  # nats of stay bonus tried, most faithful first
EDIT_COST_LIMIT = 64.0  # nats: the note cost (or, negative, bonus) is kept within
EDIT_TOLERANCE = {"register": 1.0, "range": 1.0}  # how near a followed attribute must land
ORIGIN_CACHE_SIZE = 16  # origins whose plain decode's attributes are kept
ORIGIN_VALUES: dict[tuple, dict[str, float]] = {}  # (model id, origin bytes) -> attributes
ORIGIN_LOCK = threading.Lock()  # the loop and the table worker both decode


@dataclass
class PhraseKeeper:
    """A model whose decodes are edits of a phrase: the attribute a knob moves lands where the
    model puts it, and the notes that carry the move are the phrase's where the model allows.

    The decoder is factorised (each step's distribution depends on z and the step only), so a
    decode can be steered step by step on the model's one output: log p(x_t | z)
    + bonus * [x_t = phrase_t] at the phrase's onsets - cost * [x_t starts a note]. For each
    code and each bonus (most faithful first, none above ``fidelity``), the note cost is read
    off the steps' margins that gives the plain decode's note count; the first bonus that lands
    every other ``follow``ed attribute near the plain decode's wins. So a knob moves its
    attribute exactly as far as the model does (the axes stay as monotone as the model's);
    only which notes carry the move changes. A bonus alone is no such guarantee: on a
    syncopated hook a bonus of 2 at one spread fewer notes kept 2 of the hook's 9 notes.

    With an ``origin`` (the phrase's code, where every offset knob is at its centre), a decode
    carries the model's *move* onto the phrase rather than landing on the model's value: each
    followed attribute lands at the phrase's value plus the plain decode's change from the
    origin's. The phrase plays at rest, not the model's reading of it, so a move measured from
    that reading could go the wrong way (a hook of 12 notes the model reads as 9: one spread
    more plays 11).
    """

    model: object
    tokens: np.ndarray  # (L,) the phrase, canonical, in the model's vocabulary
    fidelity: float  # the largest stay bonus tried (0: the plain decode)
    follow: tuple[str, ...] = ("notes",)  # attributes that land where the plain decode's do
    count: int | None = None  # a notes value knob's target: decodes carry exactly this many
    origin: np.ndarray | None = None  # (d,) the phrase's code: moves are measured from it

    def exactly(self, count: float | None) -> PhraseKeeper:
        """This keeper, its decodes carrying exactly ``count`` notes (None: the model's)."""
        return replace(self, count=None if count is None else int(round(count)))

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def decode(self, z: np.ndarray) -> np.ndarray:
        """z (N, d) -> log-probabilities (N, L, K)."""
        logits = np.asarray(self.model.decode(z), dtype=np.float32)
        shifted = logits - logits.max(-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))

    def decode_tokens(self, z: np.ndarray, temperature: float = 0.0,
                      rng: np.random.Generator | None = None) -> np.ndarray:
        log_p = self.decode(z)
        plain = logits_to_tokens(log_p, temperature, rng)
        if temperature > 0:
            return plain
        if self.count is not None:
            counted = self.with_count(log_p, 0.0, np.full(len(plain), self.count))
            return self.edit(log_p, counted, z)
        if self.fidelity <= 0 or not (self.tokens >= 2).any():
            return plain
        return self.edit(log_p, plain, z)

    def edit(self, log_p: np.ndarray, plain: np.ndarray, z: np.ndarray) -> np.ndarray:
        """(N, L): each row's steered decode with ``plain``'s note count and followed
        attributes (else ``plain`` itself), as the class says."""
        info = self.info
        wanted = {name: self.target(name, compute(name, plain, info.vocab, info.grid), z)
                  for name in ("notes", *self.follow) if name in info.axes or name == "notes"}
        bonuses = np.array([b for b in EDIT_BONUSES if b <= self.fidelity])
        if not (self.tokens >= 2).any() or not len(bonuses):
            return plain
        rows, steps = plain.shape
        # every bonus at once (one batch beats a loop that stops early): (B * N, L), bonus-major
        candidates = self.with_count(np.concatenate([log_p] * len(bonuses)),
                                     np.repeat(bonuses, rows), np.tile(wanted["notes"],
                                                                       len(bonuses)))
        fits = np.ones(len(candidates), dtype=bool)
        for name, target in wanted.items():
            value = compute(name, candidates, info.vocab, info.grid)
            target = np.tile(target, len(bonuses))
            near = np.abs(value - target) <= EDIT_TOLERANCE.get(name, 0.0) + 1e-9
            fits &= near | (np.isnan(value) & np.isnan(target))
        fits = fits.reshape(len(bonuses), rows)
        first = fits.argmax(0)  # the most faithful bonus that fits, per row
        chosen = candidates.reshape(len(bonuses), rows, steps)[first, np.arange(rows)]
        return np.where(fits.any(0)[:, None], chosen, plain)

    def target(self, name: str, plain: np.ndarray, z: np.ndarray) -> np.ndarray:
        """(N,) where attribute ``name`` must land, given the plain decodes' values at the
        codes z (N, d): those values, or with an origin the phrase's value moved as far as the
        model moves it (notes: a whole count within the phrase's length, at least one note
        in the knob's direction)."""
        if self.origin is None or self.count is not None:  # a count asked for is absolute
            return plain
        info = self.info
        own = float(compute(name, self.tokens[None], info.vocab, info.grid)[0])
        change = plain - self.origin_value(name)
        if name == "notes" and name in info.axes:
            change = np.round(change)
            # the notes axis saturates (the melody model decodes ~25 notes at most): a phrase
            # past the model's top, or a flat stretch, still moves one note the knob's way
            direction = np.sign(z[:, info.axes[name].dim] - self.origin[info.axes[name].dim])
            change = np.where(np.sign(change) == direction, change, direction)
        moved = np.where(np.isfinite(change), own + change, plain)  # a silent decode: the model's
        if name == "notes":
            return np.clip(np.round(moved), 0, len(self.tokens))
        return moved

    def origin_value(self, name: str) -> float:
        """Attribute ``name`` of the origin's plain decode (one decode per origin, cached)."""
        key = (id(self.model), np.asarray(self.origin, np.float32).tobytes())
        with ORIGIN_LOCK:
            values = ORIGIN_VALUES.get(key)
        if values is None:
            decoded = logits_to_tokens(np.asarray(self.model.decode(
                np.asarray(self.origin, np.float32)[None])))
            values = {n: float(compute(n, decoded, self.info.vocab, self.info.grid)[0])
                      for n in ("notes", *self.info.axes)}
            with ORIGIN_LOCK:
                while len(ORIGIN_VALUES) >= ORIGIN_CACHE_SIZE:
                    ORIGIN_VALUES.pop(next(iter(ORIGIN_VALUES)))
                ORIGIN_VALUES[key] = values
        return values[name]

    def with_count(self, log_p: np.ndarray, bonus: float | np.ndarray, count: np.ndarray
                   ) -> np.ndarray:
        """(N, L) decodes with the stay ``bonus`` (one, or one per row) and, per row, the
        note cost that gives ``count`` notes. A step starts a note when its best pitch beats
        its best of rest and hold by more than the cost, so the cost is read off the steps'
        margins sorted: between the count-th and the next (canonical form changes holds and
        rests, never onsets)."""
        steps = np.flatnonzero(self.tokens >= 2)
        favoured = log_p.copy()
        favoured[:, steps, self.tokens[steps]] += np.reshape(bonus, (-1, 1))  # one, or per row
        margin = favoured[:, :, 2:].max(-1) - favoured[:, :, :2].max(-1)  # (N, L)
        ranked = np.concatenate([np.full((len(margin), 1), np.inf), -np.sort(-margin, axis=1),
                                 np.full((len(margin), 1), -np.inf)], axis=1)  # (N, L + 2)
        wanted = np.clip(np.asarray(count, dtype=np.int64), 0, margin.shape[1])
        rows = np.arange(len(margin))
        above, below = ranked[rows, wanted], ranked[rows, wanted + 1]  # n-th and (n+1)-th
        cost = np.where(np.isinf(above), below + 1.0,
                        np.where(np.isinf(below), above - 1.0, (above + below) / 2))
        cost = np.clip(cost, -EDIT_COST_LIMIT, EDIT_COST_LIMIT)
        shifted = favoured.copy()
        shifted[:, :, 2:] -= cost[:, None, None]
        return logits_to_tokens(shifted)


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
