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


def _onset_pitches(tokens: np.ndarray, vocab: Vocabulary) -> np.ma.MaskedArray:
    """(N, L) pitches at onsets, masked elsewhere."""
    batch = _batch(tokens)
    pitches = vocab.pitch_table()[batch].astype(float)
    return np.ma.masked_less(pitches, 0)


def _finish(values: np.ma.MaskedArray | np.ndarray, tokens: np.ndarray) -> np.ndarray:
    out = np.ma.filled(np.ma.asarray(values).astype(float), np.nan)
    return out if np.ndim(tokens) > 1 else out[0]


def note_count(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    """Number of played notes (onsets): the paper's regularised attribute."""
    batch = _batch(tokens)
    return _finish((batch >= 2).sum(axis=1), tokens)


def mean_pitch(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    """Mean MIDI pitch of the played notes (one vote per onset): the register."""
    return _finish(_onset_pitches(tokens, vocab).mean(axis=1), tokens)


def highest_pitch(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    return _finish(_onset_pitches(tokens, vocab).max(axis=1), tokens)


def lowest_pitch(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    return _finish(_onset_pitches(tokens, vocab).min(axis=1), tokens)


def pitch_range(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    pitches = _onset_pitches(tokens, vocab)
    return _finish(pitches.max(axis=1) - pitches.min(axis=1), tokens)


def black_key_count(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    """Played notes on black keys: the MIDI stand-in for the paper's sharps and flats."""
    pitches = _onset_pitches(tokens, vocab)
    black = np.isin(np.ma.filled(pitches, -1) % 12, BLACK_PITCH_CLASSES) & ~np.ma.getmaskarray(
        pitches
    )
    return _finish(black.sum(axis=1), tokens)


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
    return _finish(value, tokens)


def silence_fraction(tokens: np.ndarray, vocab: Vocabulary, grid: Grid | None = None) -> np.ndarray:
    """Fraction of steps that are silent (rest, or a hold of a rest)."""
    batch = _batch(tokens)
    sounding = np.zeros(batch.shape[0], dtype=bool)
    silent = np.zeros(batch.shape, dtype=bool)
    for step in range(batch.shape[1]):
        token = batch[:, step]
        sounding = (token >= 2) | ((token == HOLD) & sounding)
        silent[:, step] = ~sounding
    return _finish(silent.mean(axis=1), tokens)


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
