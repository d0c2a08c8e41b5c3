"""Hostile MIDI into the running daemon through JACK: it keeps running, closes every note,
stays on its channels, and holds no network socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import open_notes
from jack import Peer, jack_env, jack_server
from test_fuzz import hostile_stream

pytestmark = pytest.mark.jack


def network_sockets(pid: int) -> list[str]:
    """inet sockets (tcp/udp, v4/v6) held by process ``pid``; unix sockets (JACK) are fine."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            if line.split()[9] in inodes:
                found.append(f"{table}: {line.strip()}")
    return found


def start_echoing(env: dict, model: Path, preset: Path):
    """Daemon and peers, a probe note echoed back (passthrough) before the test goes on.

    Returns (daemon, sender, listener, messages so far) or None when nothing came back (then all
    is stopped again); see README, "When things go wrong", for a JACK client that never wakes.
    """
    tag = f"fuzz-{uuid.uuid4().hex[:6]}"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet", "--bpm",
         "300", "--model", str(model), "--preset", str(preset), "--virtual-in", f"{tag} in",
         "--virtual-out", f"{tag} out"], env=env, stderr=subprocess.PIPE, text=True)
    peers = []
    try:
        peers.append(Peer(env, "send", f"{tag} in"))
        peers.append(Peer(env, "listen", f"{tag} out"))
        to_daemon, listen = peers
        received = []
        for _ in range(3):  # JACK connects new ports asynchronously
            time.sleep(0.3)
            to_daemon.command("72")
            received += listen.collect(0.5)
            if any(m.type == "note_on" for m in received):
                return daemon, to_daemon, listen, received
    except TimeoutError as error:
        print(error)
    daemon.kill()
    print("no echo came back; daemon stderr:", daemon.communicate()[1][-2000:])
    for peer in peers:
        peer.close()
    return None


def test_hostile_stream_through_jack(tiny_model_dir, tmp_path):
    preset = tmp_path / "fuzz.toml"
    preset.write_text("[options]\nchannel = 5\ninput_channels = [1, 2, 3]\npassthrough = true\n"
                      "passthrough_channel = 6\n\n[[knob]]\ncc = 20\ntarget = 'notes'\n\n"
                      "[[knob]]\ncc = 25\ntarget = 'freeze'\n")
    with jack_server() as server:
        for _ in range(3):
            started = start_echoing(jack_env(server), tiny_model_dir, preset)
            if started is not None:
                break
        else:
            pytest.fail("no MIDI came back from the daemon in 3 starts")
        daemon, to_daemon, listen, received = started
        try:
            for sent, (_, message) in enumerate(hostile_stream(7, 5000), start=1):
                to_daemon.command("hex " + message.hex())
                if sent % 50 == 0:  # bursts of 50, as a flooding controller would send
                    to_daemon.command("sync")
                    time.sleep(0.002)
            assert daemon.poll() is None, daemon.stderr.read()[-2000:]
            assert network_sockets(daemon.pid) == []
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
            received += listen.collect(0.5)
        finally:
            if daemon.poll() is None:
                daemon.kill()
            to_daemon.close()
            listen.close()
        assert daemon.returncode == 0, daemon.stderr.read()[-2000:]
        assert sum(m.type == "note_on" for m in received) > 1  # the probe and the stream's
        assert not open_notes(received)
        assert {m.channel for m in received if hasattr(m, "channel")} <= {4, 5}
