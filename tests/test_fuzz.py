"""Hostile MIDI streams through the engine: nothing escapes, nothing hangs, channels respected."""

from __future__ import annotations

import mido
import numpy as np
import pytest
from conftest import open_notes

from glsr_live.clock import InternalClock, MidiClock
from glsr_live.engine import Engine
from glsr_live.knobs import Knob, Options, Preset

MESSAGES = 100_000


def hostile_stream(seed: int, count: int):
    """(time, message) pairs: every kind of channel message, sysex floods, clock abuse."""
    rng = np.random.default_rng(seed)
    now = 0.0
    for _ in range(count):
        now += float(rng.exponential(0.002))
        kind = rng.integers(0, 14)
        channel = int(rng.integers(0, 16))
        note = int(rng.integers(0, 128))
        if kind <= 3:  # notes far outside the range, chords, doubled ons
            yield now, mido.Message("note_on", channel=channel, note=note,
                                    velocity=int(rng.integers(0, 128)))
        elif kind <= 5:  # offs with or without ons
            yield now, mido.Message("note_off", channel=channel, note=note)
        elif kind <= 7:  # 1 kHz CC sweeps on mapped and unmapped controllers
            yield now, mido.Message("control_change", channel=channel,
                                    control=int(rng.choice([20, 21, 22, 23, 24, 25, 26, 7, 64])),
                                    value=int(rng.integers(0, 128)))
        elif kind == 8:
            yield now, mido.Message("sysex", data=rng.integers(0, 128, 64).tolist())
        elif kind == 9:
            for _ in range(int(rng.integers(1, 30))):  # clock bursts, also without start
                yield now, mido.Message("clock")
        elif kind == 10:
            yield now, mido.Message(str(rng.choice(["start", "stop", "continue"])))
        elif kind == 11:
            yield now, mido.Message("songpos", pos=int(rng.integers(0, 16384)))
        elif kind == 12:
            yield now, mido.Message("pitchwheel", channel=channel,
                                    pitch=int(rng.integers(-8192, 8192)))
        else:
            yield now, mido.Message(str(rng.choice(["aftertouch", "program_change"])),
                                    channel=channel)


def preset() -> Preset:
    knobs = (Knob(20, "notes"), Knob(21, "register"), Knob(22, "temperature", min=0, max=1.5),
             Knob(23, "prior", min=0, max=1), Knob(24, "reseed"), Knob(25, "freeze"),
             Knob(26, "capture"))
    return Preset(Options(channel=5, input_channels=(1, 2, 3), passthrough=True,
                          passthrough_channel=6), knobs)


@pytest.mark.parametrize("clock_kind, seed", [("internal", 1), ("midi", 2)])
def test_hostile_stream_leaves_no_note_open(fake_model, clock_kind, seed):
    clock = InternalClock(150.0) if clock_kind == "internal" else MidiClock()
    engine = Engine(fake_model, preset(), clock, np.random.default_rng(seed))
    sent = []
    for index, (now, message) in enumerate(hostile_stream(seed, MESSAGES)):
        sent += engine.handle(message, now)
        if index % 3 == 0:
            sent += engine.tick(now)
    assert sum(m.type == "note_on" and m.velocity > 0 for m in sent) > 100
    sent += engine.stop()
    assert not open_notes(sent)
    assert not engine.open_notes()
    assert {m.channel for m in sent if hasattr(m, "channel")} <= {4, 5}
