"""End to end through a real JACK MIDI server: phrase in, knob turned, variations out, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mido
import pytest
from conftest import ROOT, open_notes
from jack import JACK_BACKEND, jack_server, wait_for_port

SHIPPED = ROOT / "presets" / "models" / "bach-soprano"
BPM = 240.0
STEP = 60 / BPM / 4
LOOP = 32 * STEP
pytestmark = pytest.mark.jack


@pytest.fixture(scope="module")
def jack_env():
    with jack_server(private=True) as name:  # on CI's shared server this test saw no MIDI
        os.environ["JACK_DEFAULT_SERVER"] = name
        os.environ["JACK_NO_START_SERVER"] = "1"
        yield {**os.environ}


def start_daemon(env: dict, model: Path, tag: str) -> subprocess.Popen:
    """The daemon with port names of its own, so no other client on the server is mistaken."""
    command = [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet",
               "--bpm", str(BPM), "--model", str(model), "--virtual-in", f"{tag} in",
               "--virtual-out", f"{tag} out"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def collect(port, seconds: float) -> list[mido.Message]:
    out, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        out += list(port.iter_pending())
        time.sleep(0.001)
    return out


def note_ons(messages) -> int:
    return sum(m.type == "note_on" and m.velocity > 0 for m in messages)


def sweep_knob(port, cc: int, start: int, stop: int) -> None:
    """Move a knob like a hand does, so soft takeover picks it up on the way."""
    step = 1 if stop >= start else -1
    for value in range(start, stop + step, step * 4):
        port.send(mido.Message("control_change", control=cc, value=value))
        time.sleep(0.002)
    port.send(mido.Message("control_change", control=cc, value=stop))


def play_phrase(port) -> None:
    """Two bars of quarter notes, as a player would send them."""
    started = time.perf_counter()
    for index, pitch in enumerate([67, 69, 71, 72, 74, 72, 71, 69]):
        while time.perf_counter() < started + index * 4 * STEP:
            time.sleep(0.0005)
        port.send(mido.Message("note_on", note=pitch, velocity=90))
        time.sleep(3 * STEP)
        port.send(mido.Message("note_off", note=pitch))


@pytest.fixture
def daemon_ports(jack_env, request):
    model = request.param
    if not model.exists():
        pytest.skip(f"{model} is not built")
    tag = f"e2e-{uuid.uuid4().hex[:6]}"
    process = start_daemon(jack_env, model, tag)
    backend = mido.Backend(JACK_BACKEND, load=True)
    try:
        to_daemon = backend.open_output(wait_for_port(backend, "output", f"{tag} in"))
        from_daemon = backend.open_input(wait_for_port(backend, "input", f"{tag} out"))
    except TimeoutError:
        process.kill()
        pytest.fail("daemon ports did not appear: " + process.communicate()[1][-2000:])
    time.sleep(1.0)
    yield process, to_daemon, from_daemon
    if process.poll() is None:
        process.kill()
        process.wait()
    to_daemon.close()
    from_daemon.close()


@pytest.mark.parametrize("daemon_ports", [SHIPPED], indirect=True)
def test_note_count_knob_raises_note_count_and_sigterm_closes_everything(daemon_ports):
    process, to_daemon, from_daemon = daemon_ports
    received = collect(from_daemon, 0.2)  # the start-up All Notes Off
    for _ in range(3):  # JACK connects new ports asynchronously: replay if nothing came back
        play_phrase(to_daemon)
        received += collect(from_daemon, 1.5 * LOOP)  # the variation starts at the phrase end
        if note_ons(received):
            break
    counts = []
    for previous, value in ((64, 0), (0, 127)):
        sweep_knob(to_daemon, 20, previous, value)
        received += collect(from_daemon, 0.5 * LOOP)  # let the change settle in
        loops = collect(from_daemon, 2 * LOOP)
        received += loops
        counts.append(note_ons(loops) / 2)
    print("note counts low, high:", counts)
    assert counts[1] >= counts[0] + 2, counts
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)
    received += collect(from_daemon, 0.3)
    assert process.returncode == 0, process.stderr.read()[-2000:]
    assert note_ons(received) > 0
    assert not open_notes(received)
    assert any(m.type == "control_change" and m.control == 123 for m in received)
