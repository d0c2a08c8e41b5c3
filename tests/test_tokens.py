"""Round trips of the token codec, each conversion beside its inverse."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glsr_live.tokens import (
    HOLD,
    REST,
    Grid,
    Note,
    NoteEvent,
    Vocabulary,
    canonical,
    events_to_notes,
    events_to_tokens,
    fit_notes,
    is_canonical,
    notes_to_events,
    notes_to_tokens,
    tokens_to_events,
    tokens_to_notes,
    unfold_notes,
)

VOCAB = Vocabulary(57, 81)
GRID = Grid()


@st.composite
def monophonic_notes(draw, seq_len=32, low=57, high=81):
    """Non-overlapping notes inside the phrase."""
    notes, step = [], draw(st.integers(0, 3))
    while step < seq_len:
        length = draw(st.integers(1, min(8, seq_len - step)))
        notes.append(Note(step, length, draw(st.integers(low, high))))
        step += length + draw(st.integers(0, 3))
    return notes


token_sequences = st.lists(st.integers(0, VOCAB.size - 1), min_size=32, max_size=32).map(
    lambda t: canonical(np.array(t)))


@given(token_sequences)
def test_tokens_to_notes_to_tokens_is_identity(tokens):
    assert np.array_equal(notes_to_tokens(tokens_to_notes(tokens, VOCAB), VOCAB, 32), tokens)


@given(monophonic_notes())
def test_notes_to_tokens_to_notes_is_identity(notes):
    assert tokens_to_notes(notes_to_tokens(notes, VOCAB, 32), VOCAB) == notes


@given(token_sequences, st.floats(40, 240), st.floats(0, 100))
def test_tokens_to_events_and_back(tokens, bpm, start):
    events = tokens_to_events(tokens, VOCAB, GRID, bpm, start)
    back, shift = events_to_tokens(events, VOCAB, GRID, bpm, start)
    assert shift == 0
    assert np.array_equal(back, tokens)


@given(monophonic_notes(), st.floats(60, 200))
def test_notes_to_events_and_back_with_timing_jitter(notes, bpm):
    step = GRID.step_seconds(bpm)
    rng = np.random.default_rng(len(notes))
    events = [NoteEvent(e.time + rng.uniform(-0.3, 0.3) * step, e.pitch, e.on, e.velocity)
              for e in notes_to_events(notes, GRID, bpm)]
    assert events_to_notes(events, GRID, bpm) == notes


def test_highest_sounding_note_wins_and_lower_note_is_restruck():
    chord = [Note(0, 8, 60), Note(0, 4, 67), Note(2, 1, 72)]
    tokens = notes_to_tokens(chord, VOCAB, 8)
    names = [VOCAB.names()[t] for t in tokens]
    assert names == ["67", "__", "72", "67", "60", "__", "__", "__"]


def test_velocity_zero_note_on_is_note_off():
    events = [NoteEvent(0.0, 60, True, 90), NoteEvent(0.5, 60, True, 0)]
    assert events_to_notes(events, GRID, 120.0) == [Note(0, 4, 60)]


def test_note_off_without_note_on_is_ignored_and_doubled_on_restarts():
    events = [NoteEvent(0.0, 62, False, 0), NoteEvent(0.0, 60, True, 90),
              NoteEvent(0.25, 60, True, 90), NoteEvent(0.5, 60, False, 0)]
    assert events_to_notes(events, GRID, 120.0) == [Note(0, 2, 60), Note(2, 2, 60)]


def test_out_of_range_phrase_is_shifted_by_octaves_and_unfolded():
    low_phrase = [Note(0, 4, 36), Note(4, 4, 40), Note(8, 4, 43)]
    fitted, shift = fit_notes(low_phrase, VOCAB)
    assert all(VOCAB.low <= n.pitch <= VOCAB.high for n in fitted)
    assert [n.pitch - 12 * shift for n in fitted] == [36, 40, 43]
    assert unfold_notes(fitted, shift) == low_phrase


def test_single_outlier_is_folded_into_range():
    fitted, shift = fit_notes([Note(0, 4, 65), Note(4, 4, 100)], VOCAB)
    assert shift == 0
    assert [n.pitch for n in fitted] == [65, 76]


def test_canonical_turns_holds_after_rests_into_rests():
    tokens = np.array([HOLD, REST, HOLD, 5, HOLD, REST])
    assert canonical(tokens).tolist() == [REST, REST, REST, 5, HOLD, REST]
    assert not is_canonical(tokens)


def test_vocabulary_round_trips_through_names_and_rejects_gaps():
    assert Vocabulary.from_names(VOCAB.names()) == VOCAB
    with pytest.raises(ValueError):
        Vocabulary.from_names(["rest", "__", "60", "62"])
    with pytest.raises(ValueError):
        Vocabulary(80, 60)


@settings(max_examples=30)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12), st.integers(0, 127)),
                max_size=12))
def test_any_polyphonic_input_gives_canonical_in_range_tokens(raw):
    notes = [Note(*n) for n in raw]
    fitted, _ = fit_notes(notes, VOCAB)
    tokens = notes_to_tokens(fitted, VOCAB, 32)
    assert is_canonical(tokens)
    assert tokens.min() >= 0 and tokens.max() < VOCAB.size


def test_a_truncated_or_broken_midi_file_says_why(tmp_path):
    """Cut at any byte, a file is one line with a reason, never 'not a readable MIDI file ()'."""
    import re

    import mido
    import pytest

    from glsr_live.errors import MidiFileError
    from glsr_live.midifile import open_midi

    whole = tmp_path / "whole.mid"
    midi = mido.MidiFile()
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=90),
                                       mido.Message("note_off", note=60, time=480)]))
    midi.save(str(whole))
    data = whole.read_bytes()
    reasons = set()
    for cut in range(1, len(data)):
        broken = tmp_path / "broken.mid"
        broken.write_bytes(data[:cut])
        with pytest.raises(MidiFileError) as caught:
            open_midi(broken)
        reason = re.search(r"\((.*)\)$", str(caught.value)).group(1)
        assert reason.strip(), str(caught.value)
        reasons.add(reason)
    assert any("cut short" in reason for reason in reasons)
