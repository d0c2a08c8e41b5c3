"""Windows of L steps from every transposition of every melody, split by piece, cached.

The cache holds the untransposed lines (seconds to parse, milliseconds to load); windows and
transpositions are cut from them in numpy on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glsr_live.attributes import ATTRIBUTES
from glsr_live.tokens import HOLD, REST, Grid, Vocabulary

from .corpus import (
    LINE_HOLD,
    LINE_REST,
    CorpusResult,
    Melody,
    corpus_fingerprint,
    load_bach,
    load_folder,
    pitches_of,
)
from .families import LINK_SHARE, assign_families, overlap_share, tune_families, window_patterns

CACHE_VERSION = 3
SPLITS = ("train", "val", "test")
DEFAULT_CACHE = Path(os.environ.get("GLSR_CACHE", Path.home() / ".cache" / "glsr-live"))


@dataclass(frozen=True)
class DatasetSettings:
    corpus: str = "bach"
    seq_len: int = 32
    stride: int = 4
    steps_per_beat: int = 4
    beats_per_bar: int = 4
    track: str | None = None
    split: tuple[float, float] = (0.8, 0.9)  # cumulative fractions for train, val

    @property
    def grid(self) -> Grid:
        return Grid(self.steps_per_beat, self.beats_per_bar, self.seq_len)


@dataclass
class Dataset:
    """Lines, their pieces and splits, and the vocabulary; windows are cut on demand."""

    settings: DatasetSettings
    names: list[str]
    lines: list[np.ndarray]
    splits: list[str]
    families: list[int]
    patterns: list[np.ndarray]  # per line: its windows' unique transposition-invariant patterns
    skipped: dict[str, str]
    vocab: Vocabulary
    from_cache: bool = False

    @property
    def grid(self) -> Grid:
        return self.settings.grid

    def pieces(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.splits) if s == split]

    def windows(self, split: str, transpose: bool = True) -> np.ndarray:
        """(N, L) int64 tokens of every window of every (transposed) piece of ``split``."""
        chunks = [
            line_windows(self.lines[i], self.settings, self.vocab, transpose)
            for i in self.pieces(split)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.settings.seq_len), np.int64)

    def train_patterns(self) -> np.ndarray:
        """Sorted unique transposition-invariant patterns of the train split's windows."""
        return np.unique(np.concatenate([self.patterns[i] for i in self.pieces("train")]
                                        or [np.zeros(0, np.uint64)]))

    def unseen(self, windows: np.ndarray) -> np.ndarray:
        """(N,) True for windows whose pattern occurs nowhere in train, in any transposition."""
        return ~np.isin(window_patterns(windows), self.train_patterns())


# ---------------------------------------------------------------- windows


def transpositions(line: np.ndarray, vocab: Vocabulary) -> range:
    """Every semitone shift that keeps the line inside the vocabulary range."""
    pitches = line[line >= 0]
    return range(vocab.low - int(pitches.min()), vocab.high - int(pitches.max()) + 1)


def sounding_pitch(line: np.ndarray) -> np.ndarray:
    """(steps,) the pitch sounding at each step, -1 in silence."""
    sounding = np.where(line >= 0, line, -1).astype(np.int64)
    for step in range(1, len(line)):
        if line[step] == LINE_HOLD:
            sounding[step] = sounding[step - 1]
    return sounding


def line_windows(
    line: np.ndarray, settings: DatasetSettings, vocab: Vocabulary, transpose: bool = True
) -> np.ndarray:
    """(N, L) canonical token windows; a window that opens mid-note re-strikes that note."""
    view = np.lib.stride_tricks.sliding_window_view(line, settings.seq_len)[:: settings.stride]
    codes = np.array(view, dtype=np.int64)
    starts = np.arange(0, len(line) - settings.seq_len + 1, settings.stride)
    opens_mid_note = codes[:, 0] == LINE_HOLD
    codes[opens_mid_note, 0] = sounding_pitch(line)[starts[opens_mid_note]]
    codes[codes[:, 0] < 0, 0] = LINE_REST  # a hold of silence is silence
    shifts = transpositions(line, vocab) if transpose else range(0, 1)
    return np.concatenate([codes_to_tokens(codes, shift, vocab) for shift in shifts])


def codes_to_tokens(codes: np.ndarray, shift: int, vocab: Vocabulary) -> np.ndarray:
    tokens = np.where(codes == LINE_REST, REST, HOLD)
    return np.where(codes >= 0, codes + shift - vocab.low + 2, tokens).astype(np.int64)


# ---------------------------------------------------------------- splits

SPLIT_METHOD = f"tune families (pattern share > {LINK_SHARE}), dealt by windows"


def untransposed_windows(dataset: Dataset, pieces: list[int]) -> np.ndarray:
    chunks = [line_windows(dataset.lines[i], dataset.settings, dataset.vocab, transpose=False)
              for i in pieces]
    return np.concatenate(chunks) if chunks else np.zeros((0, dataset.settings.seq_len), np.int64)


def split_by_family(lines: list[np.ndarray], names: list[str], settings: DatasetSettings,
                    vocab: Vocabulary) -> tuple[list[int], list[str], list[np.ndarray]]:
    """(family id, split, unique window patterns) of every line: near-copies of a tune share a
    family and a split."""
    windows = [line_windows(line, settings, vocab, transpose=False) for line in lines]
    patterns = [np.unique(window_patterns(w)) for w in windows]
    families = tune_families(patterns)
    splits = assign_families(families, names, [len(w) for w in windows], settings.split)
    return families, splits, patterns


# ---------------------------------------------------------------- build and cache


def cache_path(settings: DatasetSettings, cache_dir: Path) -> Path:
    key = json.dumps(
        [CACHE_VERSION, settings.corpus, settings.steps_per_beat, settings.beats_per_bar,
         settings.seq_len, list(settings.split), corpus_fingerprint(settings.corpus,
                                                                    settings.track)]
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache_dir / f"lines-{digest}.npz"


def parse_corpus(settings: DatasetSettings, progress: bool) -> CorpusResult:
    if settings.corpus == "bach":
        return load_bach(settings.grid, progress)
    return load_folder(Path(settings.corpus), settings.grid, settings.track, progress)


def save_cache(path: Path, result: CorpusResult) -> None:
    """Write atomically: a temp file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(m.line) for m in result.melodies], dtype=np.int64)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
        np.savez_compressed(
            handle,
            names=np.array([m.name for m in result.melodies]),
            lines=np.concatenate([m.line for m in result.melodies]).astype(np.int16),
            lengths=lengths,
            skipped=np.array(json.dumps(result.skipped)),
        )
    os.replace(handle.name, path)


def load_cache(path: Path) -> CorpusResult | None:
    """The cached corpus, or None if the file is missing or unreadable (then it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            lines = np.split(data["lines"], np.cumsum(data["lengths"])[:-1])
            melodies = [Melody(str(n), line) for n, line in zip(data["names"], lines, strict=True)]
            skipped = json.loads(str(data["skipped"]))
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return CorpusResult(melodies, skipped) if melodies else None


def build(
    settings: DatasetSettings, cache_dir: Path = DEFAULT_CACHE, progress: bool = True
) -> Dataset:
    """Load the corpus from the cache, or parse it and fill the cache."""
    path = cache_path(settings, cache_dir)
    result = load_cache(path)
    from_cache = result is not None
    if result is None:
        result = parse_corpus(settings, progress)
        save_cache(path, result)
    lines = [m.line for m in result.melodies]
    names = [m.name for m in result.melodies]
    pitches = pitches_of(lines)
    vocab = Vocabulary(int(pitches.min()), int(pitches.max()))
    families, splits, patterns = split_by_family(lines, names, settings, vocab)
    return Dataset(settings=settings, names=names, lines=lines, splits=splits,
                   families=families, patterns=patterns, skipped=result.skipped, vocab=vocab,
                   from_cache=from_cache)


def attribute_summary(windows: np.ndarray, dataset: Dataset) -> dict[str, dict[str, float]]:
    """min, 5th percentile, mean, 95th percentile and max of every attribute over windows."""
    summary = {}
    for name, function in ATTRIBUTES.items():
        values = function(windows, dataset.vocab, dataset.grid)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            continue
        p5, p95 = np.percentile(values, [5, 95])
        summary[name] = {
            "min": float(values.min()), "p5": float(p5), "mean": float(values.mean()),
            "p95": float(p95), "max": float(values.max()),
        }
    return summary


def summary(dataset: Dataset) -> dict:
    windows = {split: dataset.windows(split) for split in SPLITS}
    pieces = {split: len(dataset.pieces(split)) for split in SPLITS}
    train_patterns = dataset.train_patterns()
    return {
        "corpus": dataset.settings.corpus,
        "pieces": len(dataset.names),
        "pieces_per_split": pieces,
        "families": len(set(dataset.families)),
        "families_per_split": {split: len({dataset.families[i] for i in dataset.pieces(split)})
                               for split in SPLITS},
        "split_method": SPLIT_METHOD,
        "overlap_with_train": {
            split: round(overlap_share(untransposed_windows(dataset, dataset.pieces(split)),
                                       train_patterns), 4) for split in SPLITS},
        "skipped": len(dataset.skipped),
        "skipped_reasons": dataset.skipped,
        "windows": {split: int(len(w)) for split, w in windows.items()},
        "vocab": dataset.vocab.size,
        "pitch_range": [dataset.vocab.low, dataset.vocab.high],
        "seq_len": dataset.settings.seq_len,
        "stride": dataset.settings.stride,
        "from_cache": dataset.from_cache,
        "attributes": attribute_summary(windows["train"], dataset),
    }
