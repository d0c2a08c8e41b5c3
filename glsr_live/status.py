"""The one-line live status: state, tempo, knobs, and the playing variation as a tiny roll."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .player import Variation
from .units import format_value

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


def knob_reading(engine: Engine, index: int) -> str:
    """A knob's value in its unit: '+1.0 (9)' for an offset knob (offset in spreads, then the
    playing value), '6 → 6' for a value knob (wanted → playing), a control's plain value."""
    knob = engine.preset.knobs[index]
    value = knob.value(engine.knobs.values[index])
    if knob.target not in engine.info.axes:
        return f"{value:.2f}"
    playing = format_value(knob.target, engine.playing_value(knob.target))
    if knob.mode == "offset":
        return f"{value:+.1f} ({playing})"
    if index not in engine.knobs.touched:
        return f"- → {playing}"
    landed = engine.last_reaches.get(knob.target)  # no decode from the view
    out = "" if landed is None or landed.reached else " (out of reach)"
    return f"{format_value(knob.target, engine.knobs.targets()[knob.target])} → {playing}{out}"


def knob_readings(engine: Engine) -> list[str]:
    """'notes 6 → 6', 'register +1.0 (G4)': every attribute knob that acts, in its unit."""
    return [f"{knob.target} {knob_reading(engine, index)}"
            for index, knob in enumerate(engine.preset.knobs)
            if knob.target in engine.info.axes
            and (knob.mode == "offset" or index in engine.knobs.touched)]


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
    return (f"{engine_state(engine):9s} {bpm:6.1f} BPM | {knobs} | {notes:2d} notes"
            f"{', ' + kept_reading(engine) if kept_reading(engine) else ''} |{roll}|")


def kept_reading(engine: Engine) -> str:
    """'6 of 8 kept': how many of the phrase's notes the variation plays as they were."""
    kept = engine.kept_notes()
    return "" if kept is None else f"{kept[0]} of {kept[1]} kept"
