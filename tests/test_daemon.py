"""The realtime loop with in-memory ports and a driven clock: start sweep, errors, stop."""

from __future__ import annotations

import mido
import pytest
from conftest import MemoryPort, open_notes
from test_engine import EIGHT_QUARTERS, STEP, preset

from glsr_live.clock import InternalClock
from glsr_live.daemon import Daemon
from glsr_live.engine import Engine


class DrivenClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def phrase_messages():
    out = []
    for pitch, onset, length in EIGHT_QUARTERS:
        out.append((onset * STEP, mido.Message("note_on", note=pitch, velocity=80)))
        out.append(((onset + length) * STEP - 0.01, mido.Message("note_off", note=pitch)))
    return out


def drive(daemon: Daemon, clock: DrivenClock, until: float, feed=()) -> None:
    feed = list(feed)
    while clock.now < until:
        while feed and feed[0][0] <= clock.now:
            daemon.inport.incoming.append(feed.pop(0)[1])
        daemon.step()
        clock.now += 0.001


def test_start_sweep_and_stop_close_everything(fake_model):
    clock = DrivenClock()
    daemon = Daemon(Engine(fake_model, preset(), InternalClock(120.0)), MemoryPort(),
                    MemoryPort(), clock=clock)
    daemon.send(daemon.engine.start_messages())
    assert [(m.type, m.control) for m in daemon.outport.sent] == [("control_change", 123)]
    drive(daemon, clock, 32 * STEP + 4.5 * STEP, phrase_messages())
    assert open_notes(daemon.outport.sent)  # a note of the variation is sounding
    daemon.close_notes()
    assert not open_notes(daemon.outport.sent)


class ExplodingEngine(Engine):
    """Fails on the first tick at which a note of the variation sounds at the output."""

    sent: list | None = None  # the output port's sent messages, watched

    def tick(self, now):
        messages = super().tick(now)
        if now > 32 * STEP and self.sent is not None and open_notes(self.sent):
            raise RuntimeError("boom")
        return messages


class FeedingPort(MemoryPort):
    """Input port that advances the driven clock on each poll and releases what is due."""

    def __init__(self, feed, clock: DrivenClock, tick: float = 0.002):
        super().__init__()
        self.feed, self.clock, self.tick = list(feed), clock, tick

    def iter_pending(self):
        self.clock.now += self.tick
        while self.feed and self.feed[0][0] <= self.clock.now:
            yield self.feed.pop(0)[1]


def test_engine_error_in_run_closes_notes_then_propagates(fake_model):
    """Daemon.run() itself (not the test) closes every sounding note when the engine fails."""
    clock = DrivenClock()
    engine = ExplodingEngine(fake_model, preset(), InternalClock(120.0))
    daemon = Daemon(engine, FeedingPort(phrase_messages(), clock), MemoryPort(), clock=clock)
    engine.sent = daemon.outport.sent
    with pytest.raises(RuntimeError, match="boom"):
        daemon.run()
    played = [m for m in daemon.outport.sent if m.type == "note_on" and m.velocity > 0]
    assert played  # the variation was sounding when the engine failed
    assert not open_notes(daemon.outport.sent)


def test_stop_event_ends_run_and_closes_notes(fake_model):
    clock = DrivenClock()
    daemon = Daemon(Engine(fake_model, preset(), InternalClock(120.0)), MemoryPort(),
                    MemoryPort(), clock=clock)
    daemon.stop()
    daemon.run()  # returns at once: start sweep, then the closing sweep
    controls = [m for m in daemon.outport.sent if m.type == "control_change"]
    assert len(controls) == 2 and not open_notes(daemon.outport.sent)
