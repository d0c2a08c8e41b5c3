"""6/8 end to end through a real JACK MIDI server: `glsr-live run --metre 6/8` picks the
waltz-jig model, a jig line played in comes back note for note in loops of two 6/8 bars, and the
notes knob varies it in the same bars."""

from __future__ import annotations

import signal
import sys

import numpy as np
import pytest
from conftest import ROOT, open_notes
from jack import DAEMON_STOP_SECONDS, cleaned_up, daemon_with_peers, jack_env, jack_server

BPM = 240.0
STEP = 60 / BPM / 4
LOOP = 24 * STEP  # two bars of 6/8: 24 sixteenths (a 4/4 model's loop is 32)
JIG = [62, 66, 69, 74, 73, 71, 69, 67, 66, 64, 62, 57]  # two bars of eighths; 74 once
pytestmark = pytest.mark.jack


def command(tag: str) -> list[str]:
    return [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet",
            "--bpm", str(BPM), "--metre", "6/8", "--virtual-in", f"{tag} in",
            "--virtual-out", f"{tag} out"]


def jig_comes_back(to_daemon, from_daemon):
    received = from_daemon.collect(1.0)
    for _ in range(2):
        to_daemon.command(f"eighths {BPM} " + " ".join(map(str, JIG)))
        received += from_daemon.collect(2 * LOOP)  # the variation starts at the phrase end
        if any(m.type == "note_on" and m.velocity > 0 for m in received):
            return received
    return None


def onsets(timed) -> list[tuple[float, int]]:
    return [(t, m.note) for t, m in timed if m.type == "note_on" and m.velocity > 0]


def loop_starts(heard: list[tuple[float, int]], pitch: int) -> np.ndarray:
    return np.array([t for t, note in heard if note == pitch])


def test_a_jig_comes_back_in_loops_of_two_six_eight_bars(tmp_path):
    assert (ROOT / "presets" / "models" / "waltz-jig" / "model.json").is_file()
    with jack_server(private=True) as name:
        env = jack_env(name)
        process, to_daemon, from_daemon, received = daemon_with_peers(env, command,
                                                                     jig_comes_back)
        with cleaned_up(process, to_daemon, from_daemon):
            rest_timed = from_daemon.collect_timed(3 * LOOP)
            at_rest = onsets(rest_timed)
            pitches = [note for _, note in at_rest]
            start = pitches.index(74)
            first_loop = pitches[start:start + len(JIG)]
            assert first_loop == JIG[3:] + JIG[:3], pitches  # the phrase itself, in order
            gaps = np.diff(loop_starts(at_rest, 74))
            assert len(gaps) >= 1 and np.all(np.abs(gaps - LOOP) < 3 * STEP / 2), gaps
            times = np.array([t for t, _ in at_rest])
            eighths = (times - times[0]) / (2 * STEP)  # on the eighth-note grid of the bar
            assert np.all(np.abs(eighths - np.round(eighths)) < 0.35), eighths

            to_daemon.command("sweep 20 64 127")  # the notes knob up
            settling = from_daemon.collect(1.5 * LOOP)  # it lands at the next phrase
            varied_timed = from_daemon.collect_timed(3 * LOOP)
            varied = onsets(varied_timed)
            assert len(varied) > len(at_rest), (len(varied), len(at_rest))
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=DAEMON_STOP_SECONDS)
            tail = from_daemon.collect(0.3)
            stderr = process.stderr.read()
            assert process.returncode == 0, stderr[-4000:]
            assert "model waltz-jig" in stderr and "in 6/8" in stderr, stderr[-2000:]
            heard = received + [m for _, m in rest_timed] + settling + [
                m for _, m in varied_timed] + tail
            assert not open_notes(heard)
