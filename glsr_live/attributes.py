"""Musical attributes of token sequences (numpy), the ground truth for evaluation and status.

Every function takes tokens of shape (N, L) (or (L,)) and the vocabulary and returns (N,) floats
(a scalar for one sequence). Pitch attributes of a sequence without notes are NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .tokens import BLACK_PITCH_CLASSES, HOLD, Grid, Vocabulary

Attribute = Callable[[np.ndarray, Vocabulary, Grid], np.ndarray]


def _batch(tokens: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(tokens, dtype=np.int64))


def _onsets(tokens: np.ndarray, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, L) pitch per step (-1 off onsets), (N, L) onset mask, (N,) onset count."""
    pitches = vocab.pitch_table()[_batch(tokens)]
    onset = pitches >= 0
    return pitches, onset, onset.sum(axis=1)


def _finish(values: np.ndarray, count: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """NaN where a sequence has no notes; a scalar for a single sequence."""
    out = np.where(count > 0, values, np.nan).astype(float)
    return out if np.ndim(tokens) > 1 else out[0]


def note_count(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    """Number of played notes (onsets): the paper's regularised attribute."""
    count = (_batch(tokens) >= 2).sum(axis=1).astype(float)
    return count if np.ndim(tokens) > 1 else count[0]


def mean_pitch(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    """Mean MIDI pitch of the played notes (one vote per onset): the register."""
    pitches, onset, count = _onsets(tokens, vocab)
    return _finish((pitches * onset).sum(axis=1) / np.maximum(count, 1), count, tokens)


def highest_pitch(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    pitches, _, count = _onsets(tokens, vocab)
    return _finish(pitches.max(axis=1), count, tokens)


def lowest_pitch(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    pitches, onset, count = _onsets(tokens, vocab)
    return _finish(np.where(onset, pitches, 128).min(axis=1), count, tokens)


def pitch_range(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    pitches, onset, count = _onsets(tokens, vocab)
    spread = pitches.max(axis=1) - np.where(onset, pitches, 128).min(axis=1)
    return _finish(spread, count, tokens)


def black_key_count(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    """Played notes on black keys: the MIDI stand-in for the paper's sharps and flats."""
    table = vocab.pitch_table()
    black = (table >= 0) & np.isin(table % 12, BLACK_PITCH_CLASSES)  # (K,) per token
    count = black[_batch(tokens)].sum(axis=1).astype(float)
    return count if np.ndim(tokens) > 1 else count[0]


def metrical_weakness(grid: Grid, seq_len: int) -> np.ndarray:
    """(L,) weakness of each step: 0 bar start, 1 other beats, 2 eighth off-beats, 3 sixteenths."""
    steps = np.arange(seq_len)
    weakness = np.full(seq_len, 3.0)
    half_beat = max(grid.steps_per_beat // 2, 1)
    weakness[steps % half_beat == 0] = 2.0
    weakness[steps % grid.steps_per_beat == 0] = 1.0
    weakness[steps % grid.steps_per_bar == 0] = 0.0
    return weakness


def rhythmic_complexity(
    tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None
) -> np.ndarray:
    """Mean metrical weakness of the onsets plus onsets per beat: 0 for a lone downbeat note."""
    batch = _batch(tokens)
    grid = grid or Grid(seq_len=batch.shape[1])
    onsets = batch >= 2
    count = onsets.sum(axis=1)
    weakness = (onsets * metrical_weakness(grid, batch.shape[1])).sum(axis=1)
    beats = batch.shape[1] / grid.steps_per_beat
    value = np.where(count > 0, weakness / np.maximum(count, 1), 0.0) + count / beats
    return value if np.ndim(tokens) > 1 else value[0]


def silence_fraction(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    """Fraction of steps that are silent (a rest, or holds that follow one)."""
    batch = _batch(tokens)
    steps = np.arange(batch.shape[1])
    # index of the last token at or before each step that is not a hold (-1: none yet)
    last = np.maximum.accumulate(np.where(batch != HOLD, steps, -1), axis=1)
    sounding = (last >= 0) & (np.take_along_axis(batch, np.maximum(last, 0), axis=1) >= 2)
    silent = (~sounding).mean(axis=1)
    return silent if np.ndim(tokens) > 1 else silent[0]


ATTRIBUTES: dict[str, Attribute] = {
    "notes": note_count,
    "register": mean_pitch,
    "highest": highest_pitch,
    "lowest": lowest_pitch,
    "range": pitch_range,
    "black_keys": black_key_count,
    "rhythm": rhythmic_complexity,
    "silence": silence_fraction,
}


def compute(name: str, tokens: np.ndarray, vocab: Vocabulary, grid: Grid) -> np.ndarray:
    """Attribute ``name`` of ``tokens``; a clear error for an unknown name."""
    try:
        function = ATTRIBUTES[name]
    except KeyError:
        known = ", ".join(ATTRIBUTES)
        raise ValueError(f"unknown attribute {name!r}; known: {known}") from None
    return function(tokens, vocab, grid)
