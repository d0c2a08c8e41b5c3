"""Knobs in musical units: value targets found along an axis, and knob tables looked up."""

from __future__ import annotations

import mido
import numpy as np
import pytest
from test_engine import EIGHT_QUARTERS, STEP, play, run_until

from glsr_live.axis import (
    AxisTable,
    attributes_of,
    axis_table,
    reach,
    search_offsets,
)
from glsr_live.clock import InternalClock
from glsr_live.engine import Engine
from glsr_live.knobs import Knob, Options, Preset, PresetError, parse_preset
from glsr_live.status import status_line
from glsr_live.units import format_value, note_name, parse_note_name


def table(values, offsets=(-2.0, -1.0, 0.0, 1.0, 2.0), name="notes") -> AxisTable:
    return AxisTable(name, 0, np.array(offsets), np.zeros((len(values), 32), np.int64),
                     np.array(values, dtype=float))


def test_reach_takes_the_hit_nearest_the_phrase_else_the_nearest_value():
    along = table([3, 4, 4, 5, 6])
    assert reach(along, 4).offset == 0.0 and reach(along, 4).reached
    assert reach(along, 3).offset == -2.0
    assert reach(along, 5).offset == 1.0
    beyond = reach(along, 9)  # the axis gives at most 6 notes: play the nearest, say so
    assert (beyond.offset, beyond.value, beyond.reached) == (2.0, 6.0, False)
    silent = reach(table([np.nan] * 5, name="register"), 60)
    assert not silent.reached and silent.offset == 0.0
    register = table([58.0, 60.4, 62.0, 64.0, 66.0], name="register")
    assert reach(register, 60).offset == -1.0  # within one semitone counts
    assert reach(register, 61).offset == 0.0  # 60.4 and 62 both count: nearest the phrase


def test_note_names_round_trip_and_reject_nonsense():
    assert [parse_note_name(n) for n in ("C4", "F#5", "Bb3", "c6")] == [60, 78, 58, 84]
    assert note_name(67) == "G4" and note_name(66.6) == "G4" and note_name(float("nan")) == "-"
    assert format_value("register", 72.2) == "C5" and format_value("notes", 6.0) == "6"
    for bad in ("H4", "C", "4C", ""):
        with pytest.raises(ValueError):
            parse_note_name(bad)


def test_value_knob_presets_parse_units_and_note_names():
    preset = parse_preset({"knob": [
        {"cc": 20, "target": "notes", "mode": "value"},
        {"cc": 21, "target": "register", "mode": "value", "min": "C4", "max": "C6"}]},
        {"notes", "register"})
    notes, register = preset.knobs
    assert (notes.min, notes.max, register.min, register.max) == (2, 16, 60, 84)
    with pytest.raises(PresetError, match="mode must be"):
        parse_preset({"knob": [{"cc": 22, "target": "temperature", "mode": "value"}]}, set())
    with pytest.raises(PresetError, match="not a note name"):
        parse_preset({"knob": [{"cc": 21, "target": "register", "mode": "value",
                                "min": "middle C"}]}, {"register"})


def value_preset() -> Preset:
    knobs = (Knob(20, "notes", min=2, max=16, mode="value"),
             Knob(21, "register", min=60, max=84, mode="value"))
    return Preset(Options(soft_takeover=True), knobs)


def engine_with_phrase(fake_model, preset: Preset) -> Engine:
    engine = Engine(fake_model, preset, InternalClock(120.0))
    play(engine, EIGHT_QUARTERS)
    run_until(engine, 0.0, 32 * STEP + 0.01)  # the phrase is encoded at its end
    assert engine.phrase_z is not None
    return engine


def cc_for(knob: Knob, value: float) -> int:
    return int(np.argmin([abs(knob.value(cc) - value) for cc in range(128)]))


@pytest.mark.parametrize("wanted", [2, 5, 6, 11, 14])  # 8 notes +- 6 spreads: 2 to 14
def test_a_notes_value_knob_plays_exactly_that_many_notes(fake_model, wanted):
    engine = engine_with_phrase(fake_model, value_preset())
    knob = engine.preset.knobs[0]
    engine.handle(mido.Message("control_change", control=20, value=cc_for(knob, wanted)), 4.1)
    assert engine.pending.note_count == wanted
    assert engine.reaches["notes"].reached and engine.reaches["notes"].value == wanted


def test_an_unreachable_target_plays_the_nearest_and_the_status_says_so(fake_model):
    engine = engine_with_phrase(fake_model, value_preset())
    # the fake phrase has 8 notes; 6 spreads up the axis gives at most 14 (1 note a spread)
    engine.handle(mido.Message("control_change", control=20, value=127), 4.1)
    landed = engine.reaches["notes"]
    assert not landed.reached and landed.value == 14 and engine.pending.note_count == 14
    engine._maybe_swap(40)
    assert "notes 16 → 14 (out of reach)" in status_line(engine, 4.2)


def test_register_value_knob_lands_within_a_semitone(fake_model):
    engine = engine_with_phrase(fake_model, value_preset())
    knob = engine.preset.knobs[1]
    engine.handle(mido.Message("control_change", control=21, value=cc_for(knob, 72)), 4.1)
    pitches = engine.pending.sounding[engine.pending.onset]
    assert len(pitches) and abs(np.mean(pitches) - 72) <= 1
    assert engine.reaches["register"].reached


def test_value_knobs_do_nothing_until_moved(fake_model):
    engine = engine_with_phrase(fake_model, value_preset())
    assert engine.knobs.targets() == {} and engine.variation.note_count == 8


def test_a_single_knob_turn_is_a_table_lookup_equal_to_a_decode(fake_model):
    preset = Preset(Options(soft_takeover=False),
                    (Knob(20, "notes", min=-4, max=4), Knob(21, "register")))
    engine = engine_with_phrase(fake_model, preset)
    assert engine.prepare_tables() == 2 and engine.prepare_tables() == 0
    for value in (10, 90, 127, 70, 0):
        engine.handle(mido.Message("control_change", control=20, value=value), 4.1)
        looked_up = engine.pending.tokens.copy()
        direct = fake_model.decode_tokens(engine.latent()[None])[0]
        assert np.array_equal(looked_up, direct), value
    assert engine.timings.lookups == 5
    engine.handle(mido.Message("control_change", control=20, value=64), 4.1)  # the centre
    assert np.array_equal(engine.pending.tokens, engine.phrase.tokens)  # the phrase itself
    assert engine.timings.lookups == 5
    engine.handle(mido.Message("control_change", control=20, value=0), 4.1)
    # each table was decoded with the other knob where it was: once the notes knob moved, the
    # register table no longer fits (a decode, not a lookup) until the worker makes both anew
    engine.handle(mido.Message("control_change", control=21, value=100), 4.1)
    engine.settle()  # knob moves are decoded before the next step (or when the loop has time)
    assert engine.timings.lookups == 5
    assert engine.prepare_tables() == 2
    engine.handle(mido.Message("control_change", control=20, value=30), 4.1)
    engine.settle()
    assert engine.timings.lookups == 6
    assert np.array_equal(engine.pending.tokens,
                          fake_model.decode_tokens(engine.latent()[None])[0])


def test_axis_table_decodes_every_offset_in_one_batch(fake_model):
    calls = []
    original = fake_model.decode_tokens

    def counting(z, *args, **kwargs):
        calls.append(len(z))
        return original(z, *args, **kwargs)

    fake_model.decode_tokens = counting
    base = np.zeros(4, np.float32)
    along = axis_table(fake_model, fake_model.info, base, "notes", search_offsets())
    assert calls == [97]
    assert along.values.tolist() == sorted(along.values.tolist())  # the fake axis is monotone


def test_morph_moves_only_the_unregularised_dims(fake_model):
    from glsr_live.model import morph_latent

    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([-1.0, -2.0, -3.0, -4.0])
    half = morph_latent(a, b, 0.5, fake_model.info)  # dims 0 and 1 are notes and register
    assert half.tolist() == [1.0, 2.0, 0.0, 0.0]
    assert morph_latent(a, b, 0.0, fake_model.info).tolist() == a.tolist()
    assert morph_latent(a, b, 1.0, fake_model.info).tolist() == [1.0, 2.0, -3.0, -4.0]


def test_slot_b_and_the_morph_knob_hold_the_note_count(fake_model):
    knobs = (Knob(20, "notes", min=-4, max=4), Knob(27, "morph"),
             Knob(28, "slot_b", default=0))
    engine = engine_with_phrase(fake_model, Preset(Options(soft_takeover=False), knobs))
    sparse = [(72, 8 * i, 6) for i in range(4)]  # four notes, higher: a different phrase
    play(engine, sparse, start=32 * STEP)
    run_until(engine, 32 * STEP + 0.02, 64 * STEP - 0.02)
    engine.handle(mido.Message("control_change", control=28, value=127), 64 * STEP)
    assert engine.slot_b is not None and engine.slot_b[0] == -4  # the fake codes notes - 8
    engine.handle(mido.Message("control_change", control=27, value=127), 64 * STEP + 0.01)
    held = attributes_of(engine.pending.tokens, engine.info, ["notes", "register"])
    own = attributes_of(engine.phrase.tokens, engine.info, ["notes", "register"])
    # notes and register held at what plays unmorphed, the phrase itself (within the hold's
    # tolerance of a semitone)
    assert held["notes"] == own["notes"] and abs(held["register"] - own["register"]) <= 1
    assert engine.pending.note_count == 8


def test_a_value_knobs_search_is_ready_before_the_knob_turns(fake_model, monkeypatch):
    """The worker decodes the search along a value knob's axis ahead, as it does the offset
    knobs' tables: the knob's first move decodes no search of its own."""
    import glsr_live.axis as axis

    engine = engine_with_phrase(fake_model, value_preset())
    assert engine.prepare_tables() >= 1
    searches = []
    real = axis.axis_table
    monkeypatch.setattr(axis, "axis_table", lambda *a, **k: searches.append(a[3]) or real(*a, **k))
    engine.handle(mido.Message("control_change", control=20, value=70), 4.1)
    assert engine.pending is not None and engine.reaches["notes"].reached
    assert searches == []
