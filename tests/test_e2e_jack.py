"""End to end through a real JACK MIDI server: phrase in, knob turned, variations out, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, open_notes
from jack import Peer, jack_env, jack_server

SHIPPED = ROOT / "presets" / "models" / "bach-soprano"
BPM = 240.0
STEP = 60 / BPM / 4
LOOP = 32 * STEP
pytestmark = pytest.mark.jack


@pytest.fixture(scope="module")
def jack_env_private():
    with jack_server(private=True) as name:
        yield jack_env(name)


def start_daemon(env: dict, model: Path, tag: str) -> subprocess.Popen:
    """The daemon with port names of its own, so no other client on the server is mistaken."""
    command = [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet",
               "--bpm", str(BPM), "--model", str(model), "--virtual-in", f"{tag} in",
               "--virtual-out", f"{tag} out"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def note_ons(messages) -> int:
    return sum(m.type == "note_on" and m.velocity > 0 for m in messages)


PHRASE = f"phrase {BPM} 67 69 71 72 74 72 71 69"  # two bars of quarter notes


def start_playing(env: dict, model: Path):
    """Daemon and peers, the phrase played until its variation comes back.

    Returns (daemon, sender, listener, messages so far), or None when no MIDI came back: then
    everything started here is stopped again. JACK connects new ports asynchronously, so the
    phrase is replayed once; see README, "When things go wrong", for a JACK client that never wakes.
    """
    tag = f"e2e-{uuid.uuid4().hex[:6]}"
    process = start_daemon(env, model, tag)
    peers = []
    try:
        peers.append(Peer(env, "send", f"{tag} in"))
        peers.append(Peer(env, "listen", f"{tag} out"))
        time.sleep(1.0)
        to_daemon, from_daemon = peers
        received = from_daemon.collect(0.2)
        for _ in range(2):
            to_daemon.command(PHRASE)
            received += from_daemon.collect(1.5 * LOOP)  # the variation starts at the phrase end
            if note_ons(received):
                return process, to_daemon, from_daemon, received
    except TimeoutError as error:
        print(error)
    process.kill()
    print("no MIDI came back; daemon stderr:", process.communicate()[1][-2000:])
    for peer in peers:
        peer.close()
    return None


@pytest.fixture
def daemon_ports(jack_env_private, request):
    model = request.param
    if not model.exists():
        pytest.skip(f"{model} is not built")
    for _ in range(3):
        started = start_playing(jack_env_private, model)
        if started is not None:
            break
    else:
        pytest.fail("no MIDI came back from the daemon in 3 starts")
    yield started
    process, *peers, _ = started
    if process.poll() is None:
        process.kill()
        process.wait()
    for peer in peers:
        peer.close()


@pytest.mark.parametrize("daemon_ports", [SHIPPED], indirect=True)
def test_note_count_knob_raises_note_count_and_sigterm_closes_everything(daemon_ports):
    process, to_daemon, from_daemon, received = daemon_ports
    counts = []
    for previous, value in ((64, 0), (0, 127)):
        to_daemon.command(f"sweep 20 {previous} {value}")  # soft takeover picks it up on the way
        received += from_daemon.collect(0.5 * LOOP)  # let the change settle in
        loops = from_daemon.collect(2 * LOOP)
        received += loops
        counts.append(note_ons(loops) / 2)
    print("note counts low, high:", counts)
    assert counts[1] >= counts[0] + 2, counts
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)
    received += from_daemon.collect(0.3)
    assert process.returncode == 0, process.stderr.read()[-2000:]
    assert note_ons(received) > 0
    assert not open_notes(received)
    assert any(m.type == "control_change" and m.control == 123 for m in received)
