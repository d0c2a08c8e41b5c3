"""Hostile MIDI into the running daemon through JACK: it keeps running, closes every note,
stays on its channels, and holds no network socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest
from conftest import open_notes
from jack import JACK_BACKEND, jack_server, wait_for_port
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


def test_hostile_stream_through_jack(tiny_model_dir, tmp_path):
    preset = tmp_path / "fuzz.toml"
    preset.write_text("[options]\nchannel = 5\ninput_channels = [1, 2, 3]\npassthrough = true\n"
                      "passthrough_channel = 6\n\n[[knob]]\ncc = 20\ntarget = 'notes'\n\n"
                      "[[knob]]\ncc = 25\ntarget = 'freeze'\n")
    with jack_server() as server:
        env = {**os.environ, "JACK_DEFAULT_SERVER": server, "JACK_NO_START_SERVER": "1"}
        os.environ.update(JACK_DEFAULT_SERVER=server, JACK_NO_START_SERVER="1")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet", "--bpm",
             "300", "--model", str(tiny_model_dir), "--preset", str(preset), "--virtual-in",
             "fuzz in", "--virtual-out", "fuzz out"],
            env=env, stderr=subprocess.PIPE, text=True)
        backend = mido.Backend(JACK_BACKEND, load=True)
        try:
            to_daemon = backend.open_output(wait_for_port(backend, "output", "fuzz in"))
            listen = backend.open_input(wait_for_port(backend, "input", "fuzz out"))
            time.sleep(0.3)
            received, sent = [], 0
            for _, message in hostile_stream(7, 5000):
                to_daemon.send(message)
                sent += 1
                if sent % 50 == 0:
                    received += list(listen.iter_pending())
                    time.sleep(0.002)
            assert daemon.poll() is None, daemon.stderr.read()[-2000:]
            assert network_sockets(daemon.pid) == []
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                received += list(listen.iter_pending())
                time.sleep(0.002)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        assert daemon.returncode == 0, daemon.stderr.read()[-2000:]
        assert any(m.type == "note_on" for m in received)  # passthrough at least
        assert not open_notes(received)
        assert {m.channel for m in received if hasattr(m, "channel")} <= {4, 5}
