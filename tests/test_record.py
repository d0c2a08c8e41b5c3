"""Recording a session and replaying it offline: the same engine gives the same notes."""

from __future__ import annotations

import mido
import numpy as np
import pytest
from conftest import ROOT, MemoryPort, open_notes
from test_daemon import DrivenClock, FeedingPort
from test_engine import EIGHT_QUARTERS, STEP

from glsr_live.clock import InternalClock
from glsr_live.daemon import Daemon
from glsr_live.engine import Engine
from glsr_live.knobs import dump_preset, load_preset
from glsr_live.model import Model
from glsr_live.record import SessionRecorder, read_session
from glsr_live.replay import replay_file

SHIPPED = ROOT / "presets" / "models" / "bach-soprano"


def session_feed() -> list[tuple[float, mido.Message]]:
    """Two phrases, knob moves (one in the middle of a step), temperature up and back."""
    feed = []
    for loop, offset in ((0, 0), (2, 2)):
        for pitch, onset, length in EIGHT_QUARTERS:
            start = (loop * 32 + onset) * STEP
            feed.append((start, mido.Message("note_on", note=pitch + offset, velocity=90)))
            feed.append((start + length * STEP - 0.01, mido.Message("note_off", note=pitch)))
    # The temperature knob (CC 22) goes to its top (1.2) and back: lower, a confident model
    # samples its argmax and another seed replays the same notes.
    moves = ((4.5, 20, 64, 100), (5.06, 20, 100, 20), (6.0, 21, 64, 90), (6.5, 22, 0, 127),
             (7.2, 22, 127, 0), (9.3, 20, 20, 64))
    for seconds, control, start, stop in moves:  # hand-like sweeps: soft takeover picks up
        values = list(range(start, stop, 6 if stop > start else -6)) + [stop]
        for index, value in enumerate(values):
            feed.append((seconds + 0.003 * index,
                         mido.Message("control_change", control=control, value=value)))
    return sorted(feed, key=lambda item: item[0])


class StoppingFeed(FeedingPort):
    """Stops the daemon once the feed is played and ``tail`` seconds more have passed."""

    def __init__(self, feed, clock, daemon_ref, end):
        super().__init__(feed, clock)
        self.daemon_ref, self.end = daemon_ref, end

    def iter_pending(self):
        yield from super().iter_pending()
        if self.clock.now > self.end:
            self.daemon_ref[0].stop()


def record_session(path, seed: int = 7) -> tuple[Daemon, MemoryPort]:
    model = Model(SHIPPED)
    preset = load_preset(ROOT / "presets/knobs/default.toml", set(model.info.axes))
    clock = DrivenClock()
    settings = {"models": [str(SHIPPED)], "preset_toml": dump_preset(preset),
                "clock": "internal", "bpm": 120.0, "seed": seed}
    engine = Engine(model, preset, InternalClock(120.0), np.random.default_rng(seed))
    holder = []
    outport = MemoryPort()
    daemon = Daemon(engine, StoppingFeed(session_feed(), clock, holder, 12.0), outport,
                    clock=clock, recorder=SessionRecorder(path, settings, clock=clock))
    holder.append(daemon)
    daemon.run()
    return daemon, outport


def test_a_recorded_session_replays_note_for_note(tmp_path):
    session_file = tmp_path / "session.mid"
    daemon, outport = record_session(session_file)
    session = read_session(session_file)
    assert len(session.incoming) == len(session_feed())
    sent_notes = [m for m in outport.sent if m.type == "note_on" and m.velocity > 0]
    recorded_notes = [m for _, m in session.outgoing if m.type == "note_on" and m.velocity > 0]
    assert len(sent_notes) == len(recorded_notes) >= 10
    assert [m.note for m in sent_notes] == [m.note for m in recorded_notes]
    notes_knob = [state["notes"] for _, state in session.knob_states]
    assert max(notes_knob) > 1 and min(notes_knob) < -1  # the knob really moved
    result = replay_file(session_file, tmp_path / "replayed.mid")
    assert result["identical"], result
    replayed = mido.MidiFile(tmp_path / "replayed.mid")
    assert sum(m.type == "note_on" and m.velocity > 0 for m in replayed) == len(sent_notes)
    assert not open_notes(outport.sent)


def test_another_seed_does_not_replay_the_same(tmp_path):
    """The comparison can fail: a recording whose seed is changed replays differently (the
    temperature knob samples with the engine's generator)."""
    session_file = tmp_path / "session.mid"
    record_session(session_file, seed=7)
    raw = session_file.read_bytes().replace(b'"seed": 7', b'"seed": 8')
    session_file.write_bytes(raw)
    result = replay_file(session_file, tmp_path / "replayed.mid")
    assert not result["identical"]


def test_the_file_on_disk_is_whole_after_every_flush(tmp_path):
    clock = DrivenClock()
    recorder = SessionRecorder(tmp_path / "s.mid", {"seed": 1}, clock=clock)
    for index in range(50):
        clock.now = index * 0.1
        recorder.message("in", mido.Message("note_on", note=60 + index % 12, velocity=80))
        recorder.message("in", mido.Message("clock"))
        recorder.maybe_flush()
    recorder.drain()
    session = read_session(tmp_path / "s.mid")  # what a SIGKILL now would leave
    assert 18 <= len(session.incoming) / 2 <= 50  # flushed once a second: at most 1 s lost
    assert session.incoming[1][1].type == "clock"
    with pytest.raises(Exception, match="not a glsr-live session"):
        from glsr_live.midifile import write_notes
        from glsr_live.tokens import Grid, Note

        write_notes(tmp_path / "plain.mid", [Note(0, 4, 60)], Grid())
        read_session(tmp_path / "plain.mid")


def test_the_keep_button_stores_the_playing_variation_with_its_knobs(tmp_path, fake_model):
    from test_engine import play, preset, run_until

    from glsr_live.knobs import Knob, Options, Preset

    knobs = (*preset().knobs, Knob(29, "keep", default=0))
    engine = Engine(fake_model, Preset(Options(soft_takeover=False), knobs), InternalClock(120.0))
    clock = DrivenClock()
    notices = []
    daemon = Daemon(engine, MemoryPort(), MemoryPort(), clock=clock, notice=notices.append,
                    recorder=SessionRecorder(tmp_path / "s.mid", {"seed": 0}, clock=clock))
    play(engine, EIGHT_QUARTERS)
    run_until(engine, 0.0, 40 * STEP)
    engine.handle(mido.Message("control_change", control=20, value=100), 40 * STEP)
    run_until(engine, 40 * STEP + 0.001, 41 * STEP)
    engine.handle(mido.Message("control_change", control=29, value=127), 41 * STEP)
    daemon.after_control(41 * STEP)
    kept = tmp_path / "s-keep001.mid"
    assert kept.is_file() and notices == ["kept variation 1: s-keep001.mid"]
    midi = mido.MidiFile(kept)
    onsets = [m for m in midi if m.type == "note_on" and m.velocity > 0]
    assert len(onsets) == engine.variation.note_count > 8  # the knob added notes
    text = next(m.text for m in midi if m.type == "text")
    assert '"notes": 1.' in text or '"notes": 2.' in text


def test_a_session_cut_by_a_kill_replays_up_to_where_it_was_cut(tmp_path):
    """A SIGKILL leaves no end mark and notes sounding: the replay says the recording was cut
    short and compares the notes that had ended by then, which are identical."""
    whole = tmp_path / "session.mid"
    record_session(whole)
    session = read_session(whole)
    cut = 8.3  # mid-note, mid-loop: what a flush a second before a SIGKILL could leave
    killed = tmp_path / "killed.mid"
    recorder = SessionRecorder(killed, {k: v for k, v in session.settings.items()
                                        if k != "started"}, clock=DrivenClock())
    for track, messages in (("in", session.incoming), ("out", session.outgoing)):
        for seconds, message in messages:
            if seconds <= cut:
                recorder.message(track, message, seconds)
    recorder.flush()  # no end(): the daemon never got to write its end mark
    result = replay_file(killed, tmp_path / "replayed.mid")
    assert result["cut_short_at"] <= cut and result["identical"], result
    assert result["recorded"] >= 8


class StallingFeed(StoppingFeed):
    """A feed whose loop stalls once for ``stall`` seconds (a machine too busy to run it)."""

    def __init__(self, feed, clock, daemon_ref, end, at: float, stall: float):
        super().__init__(feed, clock, daemon_ref, end)
        self.at, self.stall = at, stall

    def iter_pending(self):
        if self.at is not None and self.clock.now >= self.at:
            self.clock.now += self.stall
            self.at = None
        yield from super().iter_pending()


def test_a_session_whose_loop_stalled_replays_note_for_note(tmp_path):
    """The live loop falls behind as its loop begins: the steps too late pass in silence, the file
    says which, and the replay plays them silent too (it never stalls itself)."""
    model = Model(SHIPPED)
    preset = load_preset(ROOT / "presets/knobs/default.toml", set(model.info.axes))
    clock = DrivenClock()
    settings = {"models": [str(SHIPPED)], "preset_toml": dump_preset(preset),
                "clock": "internal", "bpm": 120.0, "seed": 3}
    engine = Engine(model, preset, InternalClock(120.0), np.random.default_rng(3))
    holder = []
    session_file = tmp_path / "session.mid"
    daemon = Daemon(engine, StallingFeed(session_feed(), clock, holder, 12.0, 3.995, 4 * STEP),
                    MemoryPort(), clock=clock,
                    recorder=SessionRecorder(session_file, settings, clock=clock))
    holder.append(daemon)
    daemon.run()
    assert read_session(session_file).stalls  # the stall was recorded
    result = replay_file(session_file, tmp_path / "replayed.mid")
    assert result["identical"], result


def test_a_session_in_six_eight_carries_its_time_signature(tmp_path):
    from glsr_live.midifile import read_metre

    recorder = SessionRecorder(tmp_path / "s.mid", {"seed": 1, "metre": "6/8"},
                               clock=DrivenClock())
    recorder.drain()
    assert read_metre(tmp_path / "s.mid") == "6/8"  # a DAW draws its bars
    assert read_session(tmp_path / "s.mid").settings["metre"] == "6/8"
    plain = SessionRecorder(tmp_path / "t.mid", {"seed": 1}, clock=DrivenClock())
    plain.drain()
    assert read_metre(tmp_path / "t.mid") is None
