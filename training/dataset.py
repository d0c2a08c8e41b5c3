"""Windows of L steps from every transposition of every melody, split by tune family, cached.

A dataset mixes one or more sources (``bach``, ``essen``, ``nottingham``, ``oneill`` or a
folder); each is split by tune family on its own, so every source has its 80/10/10.
The cache holds each source's untransposed lines and bar lines (minutes to parse, milliseconds
to load); windows and transpositions are cut from them in numpy on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from glsr_live.attributes import ATTRIBUTES
from glsr_live.tokens import HOLD, REST, Grid, Vocabulary, bar_steps

from .corpus import (
    COLLECTIONS,
    EVALUATION_PREFIX,
    LINE_HOLD,
    LINE_REST,
    CorpusError,
    CorpusResult,
    Melody,
    corpus_fingerprint,
    load_bach,
    load_collection,
    load_folder,
    pitches_of,
)
from .families import LINK_SHARE, assign_families, overlap_share, tune_families, window_patterns

CACHE_VERSION = 5  # 5: each melody's metre; parsed once for every phrase length
WINDOW_MODES = ("stride", "bars")
SPLITS = ("train", "val", "test")
FAMILY_STEPS = 32  # families and splits come from windows this long, whatever the phrase length
DEFAULT_CACHE = Path(os.environ.get("GLSR_CACHE", Path.home() / ".cache" / "glsr-live"))


@dataclass(frozen=True)
class DatasetSettings:
    corpus: str | tuple[str, ...] = "bach"  # a source, or several mixed
    seq_len: int = 32
    stride: int = 4
    steps_per_beat: int = 4
    beats_per_bar: int = 4
    track: str | None = None
    split: tuple[float, float] = (0.8, 0.9)  # cumulative fractions for train, val
    windows: str = "stride"  # "bars": windows start on the melody's own bar lines only
    max_shift: int | None = None  # transpose at most this many semitones each way (None: all)
    metres: tuple[str, ...] = ()  # only tunes in these time signatures (empty: every tune)

    @property
    def grid(self) -> Grid:
        return Grid(self.steps_per_beat, self.beats_per_bar, self.seq_len)

    @property
    def parse_grid(self) -> Grid:
        """The grid melodies are parsed on: the same lines serve every phrase length, and a
        melody shorter than ``FAMILY_STEPS`` is left out of every dataset (splits agree)."""
        return Grid(self.steps_per_beat, 4, FAMILY_STEPS)

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.corpus,) if isinstance(self.corpus, str) else tuple(self.corpus)


def dataset_settings(data) -> DatasetSettings:
    """The settings a training config's [data] section describes."""
    corpus = tuple(data.corpus) if isinstance(data.corpus, list | tuple) else data.corpus
    metres = tuple(data.metres or ())
    beats = bar_steps(metres[0]) // 4 if metres else 4
    return DatasetSettings(corpus=corpus, seq_len=data.seq_len, stride=data.stride,
                           beats_per_bar=beats, track=data.track, windows=data.windows,
                           max_shift=data.max_shift, metres=metres)


def build_for(data, progress: bool = True, cache_dir: Path | None = None) -> Dataset:
    """The dataset a training config's [data] section describes, in its fixed pitch range
    if it has one."""
    vocab = Vocabulary(*data.vocab) if data.vocab else None
    return build(dataset_settings(data), cache_dir or DEFAULT_CACHE, progress, vocab)


@dataclass
class Dataset:
    """Lines, their pieces and splits, and the vocabulary; windows are cut on demand."""

    settings: DatasetSettings
    names: list[str]
    lines: list[np.ndarray]
    bars: list[np.ndarray]  # per line: the steps of its bar lines (empty: the grid's)
    sources: list[str]  # per line: the corpus it came from
    metres: list[str]  # per line: its time signature ('' unknown)
    splits: list[str]
    families: list[int]
    patterns: list[np.ndarray]  # per line: its windows' unique transposition-invariant patterns
    skipped: dict[str, str]
    vocab: Vocabulary
    from_cache: bool = False
    skipped_per_source: dict[str, int] = field(default_factory=dict)

    @property
    def grid(self) -> Grid:
        return self.settings.grid

    def pieces(self, split: str, source: str | None = None) -> list[int]:
        """Lines of ``split`` (of one source), in the chosen metres if the settings name some."""
        return [i for i, s in enumerate(self.splits)
                if s == split and source in (None, self.sources[i]) and self.in_metres(i)]

    def in_metres(self, index: int) -> bool:
        """Whether line ``index`` is in one of the settings' metres (every line if none)."""
        return not self.settings.metres or self.metres[index] in self.settings.metres

    def line_windows(self, index: int, transpose: bool = True) -> np.ndarray:
        return line_windows(self.lines[index], self.settings, self.vocab, transpose,
                            self.bars[index])

    def windows(self, split: str, transpose: bool = True, source: str | None = None
                ) -> np.ndarray:
        """(N, L) int64 tokens of every window of every (transposed) piece of ``split``."""
        chunks = [self.line_windows(i, transpose) for i in self.pieces(split, source)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.settings.seq_len), np.int64)

    def train_patterns(self, source: str | None = None) -> np.ndarray:
        """Sorted unique transposition-invariant patterns of the train split's windows (of one
        source, if given)."""
        return np.unique(np.concatenate([self.patterns[i] for i in self.pieces("train", source)]
                                        or [np.zeros(0, np.uint64)]))

    def unseen(self, windows: np.ndarray) -> np.ndarray:
        """(N,) True for windows whose pattern occurs nowhere in train, in any transposition."""
        return ~np.isin(window_patterns(windows), self.train_patterns())


# ---------------------------------------------------------------- windows


def transpositions(line: np.ndarray, vocab: Vocabulary, max_shift: int | None = None) -> range:
    """Every semitone shift (at most ``max_shift`` each way) that keeps the line inside the
    vocabulary range; the untransposed line always."""
    pitches = line[line >= 0]
    low, high = vocab.low - int(pitches.min()), vocab.high - int(pitches.max())
    if max_shift is not None:
        low, high = max(low, -max_shift), min(high, max_shift)
    return range(min(low, 0), max(high, 0) + 1)


def sounding_pitch(line: np.ndarray) -> np.ndarray:
    """(steps,) the pitch sounding at each step, -1 in silence."""
    sounding = np.where(line >= 0, line, -1).astype(np.int64)
    for step in range(1, len(line)):
        if line[step] == LINE_HOLD:
            sounding[step] = sounding[step - 1]
    return sounding


def window_starts(length: int, settings: DatasetSettings, bars: np.ndarray | None = None
                  ) -> np.ndarray:
    """(N,) first steps of the windows of a line of ``length`` steps.

    ``stride``: every ``stride`` steps. ``bars``: on the line's own bar lines (a 3/4 or 6/8 tune
    has a bar line every 12 steps, so its windows span 2 2/3 bars), the grid's bars if it has
    none (MIDI files).
    """
    last = length - settings.seq_len
    if settings.windows == "bars":
        if bars is None or len(bars) == 0:
            bars = np.arange(0, length, settings.grid.steps_per_bar)
        starts = np.asarray(bars, dtype=np.int64)[np.asarray(bars) <= last]
        return whole_bar_starts(starts, np.asarray(bars), settings) if settings.metres else starts
    return np.arange(0, last + 1, settings.stride)


def whole_bar_starts(starts: np.ndarray, bars: np.ndarray, settings: DatasetSettings
                     ) -> np.ndarray:
    """The starts whose window is whole bars of the grid's length: each bar line inside it and
    its end fall on the line's own bar lines (or past its last one), so a tune that changes
    metre gives windows only where it is in the chosen one."""
    bar = settings.grid.steps_per_bar
    inner = np.arange(bar, settings.seq_len + 1, bar)  # (bars in a window,) offsets
    ends = starts[:, None] + inner  # (N, bars)
    on_lines = np.isin(ends, bars) | (ends > bars.max())
    return starts[on_lines.all(axis=1)]


def line_windows(
    line: np.ndarray, settings: DatasetSettings, vocab: Vocabulary, transpose: bool = True,
    bars: np.ndarray | None = None,
) -> np.ndarray:
    """(N, L) canonical token windows; a window that opens mid-note re-strikes that note."""
    starts = window_starts(len(line), settings, bars)
    codes = line[starts[:, None] + np.arange(settings.seq_len)].astype(np.int64)  # (N, L)
    opens_mid_note = codes[:, 0] == LINE_HOLD
    codes[opens_mid_note, 0] = sounding_pitch(line)[starts[opens_mid_note]]
    codes[codes[:, 0] < 0, 0] = LINE_REST  # a hold of silence is silence
    shifts = transpositions(line, vocab, settings.max_shift) if transpose else range(0, 1)
    return np.concatenate([codes_to_tokens(codes, shift, vocab) for shift in shifts])


def codes_to_tokens(codes: np.ndarray, shift: int, vocab: Vocabulary) -> np.ndarray:
    tokens = np.where(codes == LINE_REST, REST, HOLD)
    return np.where(codes >= 0, codes + shift - vocab.low + 2, tokens).astype(np.int64)


# ---------------------------------------------------------------- splits

SPLIT_METHOD = f"tune families (pattern share > {LINK_SHARE}), dealt by windows"


def untransposed_windows(dataset: Dataset, pieces: list[int]) -> np.ndarray:
    chunks = [dataset.line_windows(i, transpose=False) for i in pieces]
    return np.concatenate(chunks) if chunks else np.zeros((0, dataset.settings.seq_len), np.int64)


def split_by_family(lines: list[np.ndarray], names: list[str], settings: DatasetSettings,
                    vocab: Vocabulary, bars: list[np.ndarray] | None = None
                    ) -> tuple[list[int], list[str], list[np.ndarray]]:
    """(family id, split, unique window patterns) of every line: near-copies of a tune share a
    family and a split.

    Families come from windows of ``FAMILY_STEPS`` every ``stride`` steps whatever windows,
    phrase length and metres training uses, so a source splits the same way in every mix and
    every model: the melody model's Bach test split is bach-soprano's, and a 3/4 tune held out
    of the melody model is held out of the waltz-jig model. A line's patterns also include its
    own windows' (bar lines of a 6/8 tune with an eighth pickup fall between those steps), so
    "unseen" means unseen at any offset.
    """
    dense = replace(settings, windows="stride", seq_len=FAMILY_STEPS, beats_per_bar=4,
                    metres=())
    windows = [line_windows(line, dense, vocab, transpose=False) for line in lines]
    patterns = [np.unique(window_patterns(w)) for w in windows]
    families = tune_families(patterns)
    splits = assign_families(families, names, [len(w) for w in windows], settings.split)
    if bars is not None and settings.windows != "stride":
        own = [line_windows(line, settings, vocab, False, b) for line, b in zip(lines, bars,
                                                                               strict=True)]
        patterns = [np.union1d(p, window_patterns(w)) for p, w in zip(patterns, own,
                                                                      strict=True)]
    return families, splits, patterns


# ---------------------------------------------------------------- build and cache


def cache_path(source: str, settings: DatasetSettings, cache_dir: Path) -> Path:
    """One cache file per source, so mixing sources never parses one twice."""
    key = json.dumps([CACHE_VERSION, source, settings.steps_per_beat,
                      corpus_fingerprint(source, settings.track)])
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache_dir / f"lines-{digest}.npz"


def parse_corpus(source: str, settings: DatasetSettings, progress: bool) -> CorpusResult:
    grid = settings.parse_grid
    if source == "bach":
        return load_bach(grid, progress)
    if source in COLLECTIONS or source.startswith(EVALUATION_PREFIX):
        return load_collection(source, grid, progress)
    return load_folder(Path(source), grid, settings.track, progress)


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
            bars=np.concatenate([m.bars for m in result.melodies]).astype(np.int32),
            bar_counts=np.array([len(m.bars) for m in result.melodies], dtype=np.int64),
            metres=np.array([m.metre for m in result.melodies]),
            skipped=np.array(json.dumps(result.skipped)),
        )
    os.replace(handle.name, path)


def load_cache(path: Path) -> CorpusResult | None:
    """The cached corpus, or None if the file is missing or unreadable (then it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            lines = np.split(data["lines"], np.cumsum(data["lengths"])[:-1])
            bars = np.split(data["bars"], np.cumsum(data["bar_counts"])[:-1])
            melodies = [Melody(str(n), line, b, str(metre)) for n, line, b, metre
                        in zip(data["names"], lines, bars, data["metres"], strict=True)]
            skipped = json.loads(str(data["skipped"]))
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return CorpusResult(melodies, skipped) if melodies else None


def load_source(source: str, settings: DatasetSettings, cache_dir: Path, progress: bool
                ) -> tuple[CorpusResult, bool]:
    """A source's melodies from the cache, or parsed (and cached); True if from the cache."""
    path = cache_path(source, settings, cache_dir)
    result = load_cache(path)
    if result is not None:
        return result, True
    result = parse_corpus(source, settings, progress)
    save_cache(path, result)
    return result, False


def build(
    settings: DatasetSettings, cache_dir: Path = DEFAULT_CACHE, progress: bool = True,
    vocab: Vocabulary | None = None,
) -> Dataset:
    """Load every source from the cache, or parse it and fill the cache; split each source by
    tune family. ``vocab`` fixes the pitch range (a fine-tune keeps its model's): melodies
    outside it are moved by octaves into it, or skipped."""
    loaded = [(source, *load_source(source, settings, cache_dir, progress))
              for source in settings.sources]
    melodies = [(source, m) for source, result, _ in loaded for m in result.melodies]
    skipped = {name: reason for _, result, _ in loaded for name, reason in result.skipped.items()}
    skipped_per_source = {source: len(result.skipped) for source, result, _ in loaded}
    if vocab is None:
        pitches = pitches_of(m.line for _, m in melodies)
        vocab = Vocabulary(int(pitches.min()), int(pitches.max()))
    else:
        melodies = fit_to_vocab(melodies, vocab, skipped)
    if not melodies:
        raise CorpusError("no melody fits the model's pitch range")
    dataset = Dataset(settings=settings, names=[m.name for _, m in melodies],
                      lines=[m.line for _, m in melodies], bars=[m.bars for _, m in melodies],
                      sources=[source for source, _ in melodies],
                      metres=[m.metre for _, m in melodies], splits=[], families=[],
                      patterns=[], skipped=skipped, vocab=vocab,
                      from_cache=all(cached for *_, cached in loaded),
                      skipped_per_source=skipped_per_source)
    split_each_source(dataset)
    return dataset


def fit_to_vocab(melodies: list[tuple[str, Melody]], vocab: Vocabulary,
                 skipped: dict[str, str]) -> list[tuple[str, Melody]]:
    """Melodies moved by whole octaves into ``vocab``'s range; those wider than it skipped."""
    kept = []
    for source, melody in melodies:
        pitches = melody.line[melody.line >= 0]
        shifts = [12 * k for k in range(-4, 5)
                  if vocab.low <= pitches.min() + 12 * k and pitches.max() + 12 * k <= vocab.high]
        if not shifts:
            skipped[melody.name] = (f"pitch range {int(pitches.min())}-{int(pitches.max())} "
                                    f"does not fit the model's {vocab.low}-{vocab.high}")
            continue
        shift = min(shifts, key=abs)
        line = np.where(melody.line >= 0, melody.line + shift, melody.line).astype(np.int16)
        kept.append((source, Melody(melody.name, line, melody.bars, melody.metre)))
    return kept


def split_each_source(dataset: Dataset) -> None:
    """Family ids, splits and patterns of every line, each source split on its own."""
    count = len(dataset.lines)
    dataset.families, dataset.splits, dataset.patterns = [0] * count, [""] * count, [None] * count
    for source in dict.fromkeys(dataset.sources):
        members = [i for i in range(count) if dataset.sources[i] == source]
        families, splits, patterns = split_by_family(
            [dataset.lines[i] for i in members], [dataset.names[i] for i in members],
            dataset.settings, dataset.vocab, [dataset.bars[i] for i in members])
        for position, index in enumerate(members):
            dataset.families[index] = members[families[position]]  # unique across sources
            dataset.splits[index] = splits[position]
            dataset.patterns[index] = patterns[position]


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


def source_summary(dataset: Dataset, source: str, train_patterns: np.ndarray) -> dict:
    """Pieces, families, windows and overlap of one source's splits (``train_patterns``: the
    whole train's)."""
    own_patterns = dataset.train_patterns(source)
    pieces = {split: dataset.pieces(split, source) for split in SPLITS}
    return {
        "pieces": sum(len(p) for p in pieces.values()),
        "pieces_per_split": {split: len(p) for split, p in pieces.items()},
        "families": len({dataset.families[i] for p in pieces.values() for i in p}),
        "windows": {split: int(sum(len(dataset.line_windows(i)) for i in p))
                    for split, p in pieces.items()},
        "overlap_with_train": {
            split: round(overlap_share(untransposed_windows(dataset, p), train_patterns), 4)
            for split, p in pieces.items()},
        # against the source's own train only: near-copies within a collection (the leak the
        # family split prevents), without figures common to every style
        "overlap_with_own_train": {
            split: round(overlap_share(untransposed_windows(dataset, p), own_patterns), 4)
            for split, p in pieces.items()},
        "skipped": dataset.skipped_per_source.get(source, 0),
    }


def summary(dataset: Dataset) -> dict:
    windows = {split: dataset.windows(split) for split in SPLITS}
    pieces = {split: len(dataset.pieces(split)) for split in SPLITS}
    train_patterns = dataset.train_patterns()
    return {
        "corpus": list(dataset.settings.sources),
        "per_corpus": {source: source_summary(dataset, source, train_patterns)
                       for source in dataset.settings.sources},
        "window_starts": ("bar lines" if dataset.settings.windows == "bars"
                          else f"every {dataset.settings.stride} steps"),
        "max_shift": dataset.settings.max_shift,
        "pieces": sum(pieces.values()),  # in the chosen metres, if any
        "metres": list(dataset.settings.metres),
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
