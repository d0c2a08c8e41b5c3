"""Vectorised attributes against plain per-phrase definitions on random phrases."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from glsr_live.attributes import ATTRIBUTES, compute
from glsr_live.tokens import Grid, Vocabulary, canonical, tokens_to_notes

VOCAB, GRID = Vocabulary(57, 81), Grid()
phrases = st.lists(st.lists(st.integers(0, VOCAB.size - 1), min_size=32, max_size=32),
                   min_size=1, max_size=6).map(lambda rows: np.stack([canonical(np.array(r))
                                                                       for r in rows]))


def reference(name: str, tokens: np.ndarray) -> float:
    notes = tokens_to_notes(tokens, VOCAB)
    pitches = [n.pitch for n in notes]
    if name == "notes":
        return len(notes)
    if name == "black_keys":
        return sum(p % 12 in (1, 3, 6, 8, 10) for p in pitches)
    if name == "silence":
        return 1 - sum(n.length for n in notes) / len(tokens)
    if name == "rhythm":
        return np.nan  # checked separately below
    if not pitches:
        return np.nan
    return {"register": np.mean, "highest": max, "lowest": min,
            "range": lambda p: max(p) - min(p)}[name](pitches)


@given(phrases)
def test_attributes_match_their_definitions(batch):
    for name in ATTRIBUTES:
        if name == "rhythm":
            continue
        values = compute(name, batch, VOCAB, GRID)
        expected = [reference(name, row) for row in batch]
        np.testing.assert_allclose(values, expected, equal_nan=True)
        assert np.isclose(compute(name, batch[0], VOCAB, GRID), expected[0], equal_nan=True)


def test_rhythm_is_zero_for_silence_and_grows_with_offbeat_notes():
    silence = np.zeros(32, dtype=np.int64)
    on_beats = canonical(np.array([VOCAB.token(60) if s % 4 == 0 else 1 for s in range(32)]))
    offbeat = canonical(np.array([VOCAB.token(60) if s % 4 == 3 else 1 for s in range(32)]))
    values = compute("rhythm", np.stack([silence, on_beats, offbeat]), VOCAB, GRID)
    assert values[0] == 0 and values[1] < values[2]
