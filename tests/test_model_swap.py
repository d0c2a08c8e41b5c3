"""Model swap while playing: Program Change picks a model from the next bar; SIGHUP reloads."""

from __future__ import annotations

import mido
import numpy as np
import pytest
from conftest import FakeModel, MemoryPort, model_json, open_notes
from test_engine import EIGHT_QUARTERS, STEP, onsets, play, preset, run_until

from glsr_live.clock import InternalClock
from glsr_live.daemon import Daemon
from glsr_live.engine import Engine, ModelSwapError
from glsr_live.model import ModelError, parse_model_json


class LowModel(FakeModel):
    """Plays every note a fifth below the plain fake: which model plays is audible."""

    directory = "low"

    def decode_tokens(self, z, temperature=0.0, rng=None):
        tokens = super().decode_tokens(z)
        return np.where(tokens >= 2, tokens - 7, tokens)


def test_program_change_swaps_at_the_next_bar_with_notes_closed(fake_model):
    low = LowModel()
    engine = Engine(fake_model, preset(), InternalClock(120.0), models=[fake_model, low])
    # off its centre the notes knob has the model play (at rest the phrase itself plays)
    engine.handle(mido.Message("control_change", control=20, value=72), 0.0)
    play(engine, EIGHT_QUARTERS)  # mean pitch 67: the fake plays G4, the low model C4
    played = run_until(engine, 0.0, 38 * STEP)  # the variation loops from step 32
    encoded = len(low.encoded)
    engine.handle(mido.Message("program_change", program=1), 38 * STEP)
    before_bar = run_until(engine, 38 * STEP + 0.001, 48 * STEP - 0.01)
    from_bar = run_until(engine, 48 * STEP - 0.009, 60 * STEP)
    assert {m.note for m in onsets(played)[-3:]} == {67}
    assert onsets(before_bar) and {m.note for m in onsets(before_bar)} == {67}
    assert onsets(from_bar) and {m.note for m in onsets(from_bar)} == {60}
    assert len(low.encoded) == encoded + 1  # the phrase was encoded again by the new model
    assert engine.model is low
    assert not open_notes(played + before_bar + from_bar + engine.stop())


def test_a_swap_waits_for_the_bar_line(fake_model):
    low = LowModel()
    engine = Engine(fake_model, preset(), InternalClock(120.0), models=[fake_model, low])
    play(engine, EIGHT_QUARTERS)
    run_until(engine, 0.0, (32 + 5) * STEP)
    engine.handle(mido.Message("program_change", program=1), (32 + 5) * STEP)
    run_until(engine, (32 + 5) * STEP + 0.001, (32 + 15.5) * STEP)
    assert engine.model is fake_model and engine.pending_model is low  # not before step 48
    run_until(engine, (32 + 15.5) * STEP + 0.001, (32 + 16.5) * STEP)
    assert engine.model is low and engine.pending_model is None


def test_models_of_another_grid_cannot_take_turns(fake_model):
    other = FakeModel()
    other.info = parse_model_json({**model_json(), "seq_len": 16}, "other")
    with pytest.raises(ModelSwapError, match="one time grid"):
        Engine(fake_model, preset(), InternalClock(120.0), models=[fake_model, other])


def test_sighup_reload_swaps_in_the_new_model_and_a_bad_one_keeps_the_old(fake_model):
    fake_model.directory = "models/mine"
    notices = []
    loads = iter([ModelError("models/mine/decoder.onnx: not a usable ONNX model"),
                  LowModel()])

    def load(directory):
        result = next(loads)
        if isinstance(result, Exception):
            raise result
        return result

    daemon = Daemon(Engine(fake_model, preset(), InternalClock(120.0)), MemoryPort(),
                    MemoryPort(), notice=notices.append, load_model=load)
    daemon.reload_model().join(5)
    assert daemon.engine.pending_model is None and daemon.engine.model is fake_model
    assert notices[-1].startswith("reload failed, still playing the old model")
    daemon.reload_model().join(5)
    assert isinstance(daemon.engine.pending_model, LowModel)
    assert "plays from the next bar" in notices[-1]


def test_a_swap_in_the_loops_first_bar_keeps_the_loops_grid(fake_model):
    """The loop runs from step 32 (two bars); a Program Change in its first bar swaps at step
    48, and the new model's variation goes on from the loop's middle, not from its start."""
    low = LowModel()
    engine = Engine(fake_model, preset(), InternalClock(120.0), models=[fake_model, low])
    play(engine, EIGHT_QUARTERS)
    run_until(engine, 0.0, 34 * STEP)
    assert engine.origin == 32
    engine.handle(mido.Message("program_change", program=1), 34 * STEP)
    run_until(engine, 34 * STEP + 0.001, 50 * STEP)
    assert engine.model is low and engine.origin == 32
    run_until(engine, 50 * STEP + 0.001, 66 * STEP)
    assert engine.origin == 32  # the next loop starts at 64, on the phrase's grid


def test_program_change_with_one_model_says_so(fake_model):
    notices = []
    daemon = Daemon(Engine(fake_model, preset(), InternalClock(120.0)),
                    MemoryPort([mido.Message("program_change", program=1)]), MemoryPort(),
                    notice=notices.append)
    daemon.step()
    assert notices == ["Program Change 1: only one model is loaded (load more with --model "
                       "NAME --model NAME …)"]
    assert daemon.engine.pending_model is None
