"""Morph holds what the phrase plays: note count and register, with the shipped model."""

from __future__ import annotations

import mido
import numpy as np
from conftest import ROOT

from glsr_live.midifile import write_notes
from glsr_live.model import Model
from glsr_live.render import Sweep, render
from glsr_live.tokens import Grid, Note

MELODY = ROOT / "presets" / "models" / "melody"


def random_phrase(rng: np.random.Generator, count: int) -> list[Note]:
    onsets = sorted(int(o) for o in rng.choice(32, count, replace=False))
    ends = onsets[1:] + [32]
    return [Note(o, e - o, int(rng.integers(62, 79))) for o, e in zip(onsets, ends, strict=True)]


def test_a_morph_sweep_plays_the_phrases_note_count_throughout(tmp_path):
    """A sparse phrase morphed towards a dense one: every step of the sweep plays as many
    notes as the phrase's own variation (render A.mid --morph B.mid --sweep morph=0:1:5 once
    played 8, 8, 8, 13, 12). Where the axis cannot play the count, the nearest is allowed."""
    model = Model(MELODY)
    rng = np.random.default_rng(0)
    held = steps = 0
    for _ in range(12):
        write_notes(tmp_path / "a.mid", random_phrase(rng, int(rng.integers(4, 10))), Grid())
        write_notes(tmp_path / "b.mid", random_phrase(rng, int(rng.integers(10, 18))), Grid())
        summary = render(tmp_path / "a.mid", tmp_path / "out.mid", model, [],
                         [Sweep("morph", 0.0, 1.0, 5)], morph=tmp_path / "b.mid")
        counts = [item["notes"] for item in summary[1:]]
        assert all(abs(count - counts[0]) <= 1 for count in counts), counts
        held += sum(count == counts[0] for count in counts[1:])
        steps += len(counts) - 1
    assert held / steps >= 0.9, (held, steps)


def test_the_morph_knob_holds_the_note_count_live(tmp_path):
    from test_engine import STEP, play, run_until

    from glsr_live.clock import InternalClock
    from glsr_live.engine import Engine
    from glsr_live.knobs import Knob, Options, Preset

    model = Model(MELODY)
    knobs = (Knob(27, "morph", min=0, max=1, default=0), Knob(28, "slot_b", default=0))
    engine = Engine(model, Preset(Options(soft_takeover=False), knobs), InternalClock(120.0),
                    np.random.default_rng(0))
    sparse = [(67, 0, 8), (69, 8, 8), (71, 16, 8), (72, 24, 8)]
    dense = [(60 + (i * 5) % 12, 2 * i, 2) for i in range(16)]
    play(engine, dense)
    run_until(engine, 0.0, 32 * STEP - 0.02)
    engine.handle(mido.Message("control_change", control=28, value=127), 32 * STEP)  # slot B
    play(engine, sparse, start=32 * STEP)
    run_until(engine, 32 * STEP + 0.001, 64 * STEP + 0.01)
    own = engine.variation.note_count
    for value in (32, 64, 96, 127):
        engine.handle(mido.Message("control_change", control=27, value=value), 65 * STEP)
        assert abs(engine.pending.note_count - own) <= 1, (value, own)
