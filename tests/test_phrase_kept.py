"""The phrase at rest, kept notes when a knob moves, and the player's feel: with real models."""

from __future__ import annotations

import mido
import numpy as np
from conftest import ROOT

from glsr_live.clock import InternalClock
from glsr_live.engine import Engine
from glsr_live.knobs import Knob, Options, Preset
from glsr_live.model import Model, PhraseKeeper, logits_to_tokens, refined_code
from glsr_live.render import render

MELODY = ROOT / "presets" / "models" / "melody"
# A syncopated hook (onsets off the beat, ties over it), as (16th onset, length, pitch,
# velocity, played offset in 16ths): the melody model's own decode loses notes of it.
HOOK = [(0, 3, 64, 101), (3, 3, 67, 72), (6, 2, 69, 88), (10, 3, 67, 64), (13, 3, 64, 110),
        (16, 2, 62, 96), (19, 3, 64, 70), (22, 4, 67, 90), (27, 5, 60, 115)]
OFFSETS = [0.0, 0.12, -0.08, 0.2, -0.15, 0.05, 0.1, -0.1, 0.0]


def write_hook(path, bpm: float = 96.0) -> None:
    ticks = 480
    events = []
    for (onset, length, pitch, velocity), late in zip(HOOK, OFFSETS, strict=True):
        start = round((onset + late) * ticks / 4)
        events += [(start, 1, pitch, velocity), (round((onset + length) * ticks / 4) - 10, 0,
                                                 pitch, 0)]
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))])
    now = 0
    for tick, on, pitch, velocity in sorted(events):
        track.append(mido.Message("note_on" if on else "note_off", note=pitch,
                                  velocity=velocity, time=tick - now))
        now = tick
    midi = mido.MidiFile(ticks_per_beat=ticks)
    midi.tracks.append(track)
    midi.save(str(path))


def played(path) -> list[tuple[float, int, int]]:
    """(onset in seconds, pitch, velocity) of a file's notes."""
    out, now = [], 0.0
    for message in mido.MidiFile(str(path)):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            out.append((now, message.note, message.velocity))
    return out


def test_render_at_rest_plays_the_phrase_as_it_was_played(tmp_path):
    """No knob moved: bars 3-4 are bars 1-2 note for note, with the played velocities and
    timing (within 1 ms) at the file's tempo (96 BPM)."""
    write_hook(tmp_path / "hook.mid")
    summary = render(tmp_path / "hook.mid", tmp_path / "out.mid", Model(MELODY), [], [])
    assert summary[0]["bpm"] == 96.0 and summary[1]["kept"] == [9, 9]
    notes = played(tmp_path / "out.mid")
    phrase_seconds = 32 * 60 / 96 / 4
    first, again = notes[:9], notes[9:]
    assert len(again) == 9
    for (t1, p1, v1), (t2, p2, v2) in zip(first, again, strict=True):
        assert p1 == p2 and v1 == v2
        assert abs(t2 - phrase_seconds - t1) < 0.001
    source = played(tmp_path / "hook.mid")
    assert [(round(t, 3), p, v) for t, p, v in source] == [(round(t, 3), p, v) for t, p, v in first]


def test_render_quantise_plays_on_the_grid(tmp_path):
    write_hook(tmp_path / "hook.mid")
    render(tmp_path / "hook.mid", tmp_path / "out.mid", Model(MELODY), [], [], quantise=True)
    step = 60 / 96 / 4
    again = played(tmp_path / "out.mid")[9:]
    assert all(abs(t / step - round(t / step)) < 0.01 for t, _, _ in again)


def test_live_at_rest_plays_the_captured_phrase_with_its_velocities():
    model = Model(MELODY)
    engine = Engine(model, Preset(Options(soft_takeover=False), (Knob(20, "notes"),)),
                    InternalClock(120.0), np.random.default_rng(0))
    step = 0.125
    for (onset, length, pitch, velocity), late in zip(HOOK, OFFSETS, strict=True):
        engine.handle(mido.Message("note_on", note=pitch, velocity=velocity),
                      (onset + late) * step)
        engine.handle(mido.Message("note_off", note=pitch), (onset + length) * step - 0.01)
    sent, now = [], 0.0
    while now < 63.5 * step:  # the phrase's first loop
        sent += [(now, m) for m in engine.tick(now)]
        now += 0.0005
    assert np.array_equal(engine.variation.tokens, engine.phrase.tokens)
    struck = [(at, m.note, m.velocity) for at, m in sent
              if m.type == "note_on" and m.velocity > 0]
    assert [(p, v) for _, p, v in struck] == [(p, v) for _, _, p, v in HOOK]
    # late notes come as late as they were played; early ones on the grid (no look-ahead)
    origin = OFFSETS[0] * step  # the clock started at the first note played
    for (at, _, _), (onset, *_), late in zip(struck, HOOK, OFFSETS, strict=True):
        wanted = origin + (32 + onset + max(0.0, late - OFFSETS[0])) * step
        assert abs(at - wanted) <= 0.001, (onset, at, wanted)


def test_an_edit_moves_the_note_count_as_the_model_does_and_keeps_the_phrases_notes():
    """The notes knob one and two spreads either way: the edit plays exactly as many notes as
    the plain decode (fidelity 0), and more of them are the hook's."""
    model = Model(MELODY)
    info = model.info
    tokens = np.zeros(32, dtype=np.int64)
    for onset, length, pitch, _ in HOOK:
        tokens[onset] = info.vocab.token(pitch)
        tokens[onset + 1: onset + length] = 1
    mu = model.encode(tokens[None])[0][0]
    dim = info.axes["notes"].dim
    phrase_onsets = {(t, int(k)) for t, k in enumerate(tokens) if k >= 2}
    gained = 0
    for spreads in (-2, -1, 1, 2):
        moved = mu.copy()
        moved[dim] += spreads * float(info.latent.std[dim])

        def onsets(fidelity: float, z=moved) -> set:
            decoded = PhraseKeeper(model, tokens, fidelity).decode_tokens(z[None])[0]
            return {(t, int(k)) for t, k in enumerate(decoded) if k >= 2}

        plain, edited = onsets(0.0), onsets(8.0)
        assert len(edited) == len(plain), spreads
        assert len(edited & phrase_onsets) >= len(plain & phrase_onsets)
        gained += len(edited & phrase_onsets) - len(plain & phrase_onsets)
    assert gained >= 8  # on this hook: 3 / 5 / 7 / 9 kept against 1 / 2 / 3 / 4


# A reel-like line of running 16ths (an eighth at the end of each half bar), 28 notes: the
# melody model reads it as 25, and one spread up its plain decode stays at 25
REEL = [62, 64, 66, 67, 69, 71, 69, 67, 66, 64, 62, 64, 66, 69, 74, 73, 71, 69, 67, 66, 64, 66,
        67, 69, 71, 73, 74, 71, 69, 66, 64, 62]


def test_an_offset_move_from_the_phrase_carries_the_models_change_onto_the_phrase():
    """With the phrase's code as origin, the notes knob plays the phrase's count plus the
    plain decode's change from the code's own decode, and never a step against the knob (one
    note at least where the model does not move); without it, one spread more played fewer
    notes than the phrase."""
    model = Model(MELODY)
    info = model.info
    tokens = np.ones(32, dtype=np.int64)
    for step, pitch in enumerate(REEL):
        if step % 8 != 7:
            tokens[step] = info.vocab.token(pitch)
    mu = model.encode(tokens[None])[0][0]
    dim = info.axes["notes"].dim
    std = float(info.latent.std[dim])

    def notes(keeper: PhraseKeeper, spreads: float, axis: str = "notes") -> int:
        z = mu.copy()
        z[info.axes[axis].dim] += spreads * std
        return int((keeper.decode_tokens(z[None])[0] >= 2).sum())

    plain = PhraseKeeper(model, tokens, 0.0)
    change = {s: notes(plain, s) - notes(plain, 0.0) for s in (-2, -1, 1, 2)}
    assert notes(plain, 0.0) == 25
    # the model's reading does not follow the knob somewhere (melody: two notes fewer at +1),
    # so the carried decode's "one note at least" is exercised
    assert any(np.sign(moved) != np.sign(spreads) for spreads, moved in change.items())
    carried = PhraseKeeper(model, tokens, 8.0, origin=mu)
    for spreads, moved in change.items():
        wanted = 28 + (moved if np.sign(moved) == np.sign(spreads) else int(np.sign(spreads)))
        assert notes(carried, spreads) == min(32, wanted), spreads
    assert notes(PhraseKeeper(model, tokens, 8.0), 1) < 28  # no origin: fewer than played
    register = PhraseKeeper(model, tokens, 8.0, ("notes", "register"), origin=mu)
    assert notes(register, 1, "register") == 28  # the register knob leaves the count alone


def captured_hook(engine: Engine, step: float) -> float:
    """Play HOOK into ``engine`` and run it through the phrase's first loop; the time now."""
    for (onset, length, pitch, velocity), late in zip(HOOK, OFFSETS, strict=True):
        engine.handle(mido.Message("note_on", note=pitch, velocity=velocity),
                      (onset + late) * step)
        engine.handle(mido.Message("note_off", note=pitch), (onset + length) * step - 0.01)
    now = 0.0
    while now < 63.5 * step:
        engine.tick(now)
        now += 0.0005
    return now


def test_the_notes_value_knob_plays_exactly_the_count_asked_for():
    """A value knob for notes (6 .. 12 here) plays that many notes, live, even where the
    model's own axis skips the count; the view's reach says so."""
    model = Model(MELODY)
    knob = Knob(21, "notes", min=6.0, max=12.0, mode="value")
    engine = Engine(model, Preset(Options(soft_takeover=False), (knob,)), InternalClock(120.0),
                    np.random.default_rng(0))
    step = 0.125
    now = captured_hook(engine, step)
    for value in range(0, 128, 8):
        engine.handle(mido.Message("control_change", control=21, value=value), now)
        for _ in range(160):  # past the step that plays the move
            now += 0.002
            engine.tick(now)
        wanted = round(knob.value(value))
        assert int((engine.variation.tokens >= 2).sum()) == wanted, value
        assert engine.last_reaches["notes"].reached and engine.last_reaches["notes"].value == wanted


def hook_tokens(model: Model) -> np.ndarray:
    tokens = np.zeros(32, dtype=np.int64)
    for onset, length, pitch, _ in HOOK:
        tokens[onset] = model.info.vocab.token(pitch)
        tokens[onset + 1: onset + length] = 1
    return tokens


def test_the_refined_code_decodes_the_phrase_at_least_as_well_and_always_the_same():
    model = Model(MELODY)
    tokens = hook_tokens(model)
    mu, logvar = (row[0] for row in model.encode(tokens[None]))
    code = refined_code(model, tokens, mu, logvar)
    assert np.array_equal(code, refined_code(model, tokens, mu, logvar))  # seeded by the phrase

    def kept(z: np.ndarray) -> int:
        decoded = logits_to_tokens(np.asarray(model.decode(z[None])))[0]
        return int(((decoded == tokens) & (tokens != 1)).sum())

    assert kept(code) > kept(mu)  # on this hook the encoder's mean loses notes a code keeps


def test_a_phrase_takes_its_refined_code_one_bar_in_found_ahead_or_on_time():
    """Knob moves start from the refined code from one bar after the phrase starts, whether
    the worker found it ahead or the loop finds it then: live and replay agree."""
    model = Model(MELODY)
    codes = []
    for worker in (True, False):
        engine = Engine(model, Preset(Options(soft_takeover=False), (Knob(20, "notes"),)),
                        InternalClock(120.0), np.random.default_rng(0))
        step, now = 0.125, 0.0
        for (onset, length, pitch, velocity), late in zip(HOOK, OFFSETS, strict=True):
            engine.handle(mido.Message("note_on", note=pitch, velocity=velocity),
                          (onset + late) * step)
            engine.handle(mido.Message("note_off", note=pitch), (onset + length) * step - 0.01)
        while engine.phrase is None:  # the phrase is captured at its loop's end
            now += 0.002
            engine.tick(now)
        mu = model.encode(engine.phrase.tokens[None])[0][0]
        assert engine.refinement is not None and np.array_equal(engine.phrase_z, mu)
        if worker:
            assert engine.prepare_refinement() and not engine.prepare_refinement()
        due = engine.refinement.at_step
        while engine.next_step <= due:
            now += 0.002
            engine.tick(now)
        assert engine.refinement is None and not np.array_equal(engine.phrase_z, mu)
        codes.append(engine.phrase_z.copy())
    assert np.array_equal(codes[0], codes[1])


def test_live_offset_knobs_measure_their_move_from_the_phrases_code_and_value_knobs_do_not():
    model = Model(MELODY)
    offset = Knob(20, "notes", min=-2.5, max=2.5)
    value = Knob(21, "register", min=60.0, max=76.0, mode="value")
    engine = Engine(model, Preset(Options(soft_takeover=False), (offset, value)),
                    InternalClock(120.0), np.random.default_rng(0))
    now = captured_hook(engine, 0.125)
    engine.handle(mido.Message("control_change", control=20, value=100), now)
    assert np.array_equal(engine.editor.origin, engine.phrase_z)
    engine.handle(mido.Message("control_change", control=21, value=90), now + 0.001)
    assert engine.editor.origin is None  # a target asks for a value, not a move
