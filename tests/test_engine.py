"""Engine behaviour with in-memory messages and a driven clock (no sleeping, no ports)."""

import mido
import numpy as np
from conftest import open_notes

from glsr_live.clock import InternalClock, MidiClock
from glsr_live.engine import Engine
from glsr_live.knobs import Knob, Options, Preset

STEP = 0.125  # seconds per 16th at 120 BPM
L = 32


def preset(**options) -> Preset:
    knobs = (Knob(20, "notes", min=-4, max=4), Knob(21, "register"),
             Knob(25, "freeze", default=0), Knob(26, "capture", default=0))
    return Preset(Options(**{"soft_takeover": False, **options}), knobs)


def play(engine, pitches_and_steps, start=0.0, jitter=0.0, velocity=90, seed=0):
    """Notes (pitch, onset step, length) at 120 BPM, with optional timing jitter."""
    rng = np.random.default_rng(seed)
    out = []
    for pitch, onset, length in pitches_and_steps:
        on = start + (onset + rng.uniform(-jitter, jitter)) * STEP
        off = start + (onset + length + rng.uniform(-jitter, 0)) * STEP - 0.001
        out += engine.handle(mido.Message("note_on", note=pitch, velocity=velocity), on)
        out += engine.handle(mido.Message("note_off", note=pitch), off)
    return out


def run_until(engine, start, end, dt=0.001):
    out, now = [], start
    while now <= end:
        out += engine.tick(now)
        now += dt
    return out


def onsets(messages, channel=0):
    return [m for m in messages if m.type == "note_on" and m.velocity > 0 and m.channel == channel]


EIGHT_QUARTERS = [(60 + 2 * i, 4 * i, 4) for i in range(8)]


def test_phrase_is_captured_quantised_and_replayed_next_loop(fake_model):
    engine = Engine(fake_model, preset(), InternalClock(120.0))
    play(engine, EIGHT_QUARTERS, jitter=0.3)
    played = run_until(engine, 0.0, 2 * L * STEP - 0.01)
    captured = fake_model.encoded[-1][0]
    names = [fake_model.info.vocab.names()[t] for t in captured]
    assert names[0:5] == ["60", "__", "__", "__", "62"]
    assert sum(t >= 2 for t in captured) == 8
    assert len(onsets(played)) == 8  # 8 notes decoded at knob 0
    assert not open_notes(played + engine.stop())


def test_note_count_knob_adds_and_removes_notes(fake_model):
    counts = []
    for value in (0, 64, 127):
        engine = Engine(fake_model, preset(), InternalClock(120.0))
        play(engine, EIGHT_QUARTERS)
        engine.tick(L * STEP)
        engine.handle(mido.Message("control_change", control=20, value=value), L * STEP)
        counts.append(len(onsets(run_until(engine, L * STEP + 0.001, 2 * L * STEP + 0.01))))
    assert counts[0] < counts[1] == 8 < counts[2]


def test_knob_change_takes_effect_at_next_step_or_bar(fake_model):
    for apply_at, expected_delay in (("step", 1), ("bar", 16)):
        engine = Engine(fake_model, preset(apply_at=apply_at), InternalClock(120.0))
        play(engine, EIGHT_QUARTERS)
        run_until(engine, 0, L * STEP + 0.5 * STEP)  # at step 32.5
        engine.handle(mido.Message("control_change", control=20, value=127), (L + 0.5) * STEP)
        assert engine.pending is not None
        run_until(engine, (L + 0.5) * STEP, (L + expected_delay - 0.1) * STEP)
        assert engine.pending is not None, apply_at
        run_until(engine, (L + expected_delay - 0.1) * STEP, (L + expected_delay + 0.1) * STEP)
        assert engine.pending is None, apply_at


def test_soft_takeover_waits_for_the_knob_to_reach_its_value(fake_model):
    engine = Engine(fake_model, preset(soft_takeover=True), InternalClock(120.0))
    cc = lambda v: mido.Message("control_change", control=20, value=v)  # noqa: E731
    engine.handle(cc(127), 0.0)
    assert engine.knobs.offsets()["notes"] == 0.0
    engine.handle(cc(100), 0.01)
    engine.handle(cc(50), 0.02)  # swept across 64: picked up
    assert engine.knobs.offsets()["notes"] < 0
    engine.handle(cc(127), 0.03)
    assert engine.knobs.offsets()["notes"] == 4.0


def test_phrase_played_two_octaves_low_comes_back_two_octaves_low(fake_model):
    engine = Engine(fake_model, preset(), InternalClock(120.0))
    play(engine, [(p - 24, s, n) for p, s, n in EIGHT_QUARTERS])
    played = onsets(run_until(engine, 0.0, 2 * L * STEP - 0.01))
    assert all(m.note < 57 for m in played)


def test_stop_closes_every_note_including_passthrough(fake_model):
    engine = Engine(fake_model, preset(passthrough=True), InternalClock(120.0))
    sent = play(engine, EIGHT_QUARTERS)
    sent += engine.handle(mido.Message("note_on", note=70, velocity=80), L * STEP)  # held
    sent += run_until(engine, 0, L * STEP + 3.3 * STEP)
    assert open_notes(sent)  # something is sounding mid-phrase
    sent += engine.stop()
    assert not open_notes(sent)
    assert {m.channel for m in sent} <= {0, 1}


def test_freeze_keeps_the_variation_and_capture_button_takes_last_two_bars(fake_model):
    engine = Engine(fake_model, preset(auto_capture=False), InternalClock(120.0))
    play(engine, EIGHT_QUARTERS)
    run_until(engine, 0, L * STEP + 2 * STEP)
    assert engine.variation is None  # auto capture is off
    engine.handle(mido.Message("control_change", control=26, value=127), L * STEP + 2 * STEP)
    assert engine.pending is not None and engine.pending_from == L + 16  # next bar line
    run_until(engine, L * STEP + 2 * STEP, (L + 17) * STEP)
    assert engine.variation is not None and engine.origin == L + 16
    engine.handle(mido.Message("control_change", control=25, value=127), (L + 17) * STEP)
    engine.handle(mido.Message("control_change", control=20, value=0), (L + 17) * STEP)
    assert engine.pending is None  # frozen: the knob is remembered, not applied
    engine.handle(mido.Message("control_change", control=25, value=0), (L + 18) * STEP)
    assert engine.pending is not None and engine.pending.note_count < 8


def test_midi_clock_drives_steps_tempo_and_stop(fake_model):
    clock = MidiClock()
    engine = Engine(fake_model, preset(), clock)
    tick = 60 / 100 / 24  # 100 BPM
    sent, now = [], 0.0
    engine.handle(mido.Message("start"), now)
    for step in range(2 * L + 6):
        if step < L and step % 4 == 0:
            sent += engine.handle(mido.Message("note_on", note=64, velocity=90), now)
        if step < L and step % 4 == 2:
            sent += engine.handle(mido.Message("note_off", note=64), now)
        for _ in range(6):
            now += tick
            sent += engine.handle(mido.Message("clock"), now)
            sent += engine.tick(now)
    assert abs(clock.bpm - 100) < 0.5
    assert len(onsets(sent)) >= 8
    sent += engine.handle(mido.Message("stop"), now)
    assert not open_notes(sent)
    engine.handle(mido.Message("songpos", pos=16), now)
    assert clock.ticks == 96


def test_channel_filter_ignores_other_channels(fake_model):
    engine = Engine(fake_model, preset(input_channels=(2,)), InternalClock(120.0))
    play(engine, EIGHT_QUARTERS)  # channel 1: ignored
    run_until(engine, 0, 2 * L * STEP)
    assert engine.variation is None and not fake_model.encoded
