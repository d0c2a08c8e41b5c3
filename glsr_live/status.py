"""The one-line live status: state, tempo, knobs, and the playing variation as a tiny roll."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .axis import format_value
from .player import Variation

if TYPE_CHECKING:
    from .engine import Engine

BLOCKS = "▁▂▃▄▅▆▇█"


def tiny_roll(variation: Variation | None, low: int, high: int) -> str:
    """One character per step: a block whose height is the pitch at onsets, '-' held, '.' rest."""
    if variation is None:
        return ""
    chars = []
    for step, pitch in enumerate(variation.sounding.tolist()):
        if pitch < 0:
            chars.append(".")
        elif variation.onset[step]:
            level = (pitch - low) / max(1, high - low)
            chars.append(BLOCKS[int(np.clip(level, 0, 0.999) * len(BLOCKS))])
        else:
            chars.append("-")
    return "".join(chars)


def engine_state(engine: Engine) -> str:
    if not engine.clock.running:
        return "stopped" if engine.variation is not None else "waiting"
    if engine.frozen:
        return "frozen"
    return "playing" if engine.variation is not None else "listening"


def knob_readings(engine: Engine) -> list[str]:
    """Each attribute knob in its unit: 'notes 6 → 6' for a value target (wanted → playing),
    'register +1.0 (G4)' for an offset knob (offset in spreads, the playing value)."""
    readings = []
    for name, target in engine.knobs.targets().items():
        landed = engine.reaches.get(name)
        playing = format_value(name, engine.playing_value(name))
        reading = f"{name} {format_value(name, target)} → {playing}"
        if landed is not None and not landed.reached:
            reading += " (out of reach)"
        readings.append(reading)
    for name, offset in engine.knobs.offsets().items():
        readings.append(f"{name} {offset:+.1f} ({format_value(name, engine.playing_value(name))})")
    return readings


def status_line(engine: Engine, now: float) -> str:
    vocab = engine.info.vocab
    knobs = " ".join(knob_readings(engine))
    temperature = engine.knobs.value_of("temperature")
    if temperature:
        knobs += f" temp {temperature:.2f}"
    pickup = engine.knobs.waiting_for_pickup()
    if pickup:
        knobs += f" (pick up: {', '.join(pickup)})"
    bpm = getattr(engine.clock, "bpm", 0.0)
    notes = engine.variation.note_count if engine.variation is not None else 0
    roll = tiny_roll(engine.variation, vocab.low, vocab.high)
    return f"{engine_state(engine):9s} {bpm:6.1f} BPM | {knobs} | {notes:2d} notes |{roll}|"
