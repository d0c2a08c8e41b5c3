"""Hostile MIDI into the running daemon through JACK: it keeps running, closes every note,
stays on its channels, and holds no network socket."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import open_notes
from jack import Peer, cleaned_up, daemon_with_peers, jack_env, jack_server
from test_fuzz import hostile_stream

pytestmark = pytest.mark.jack


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (glsr-live run is a supervisor and the daemon, its child)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [pid] + [p for child in children for p in process_tree(child)]


def network_sockets(pid: int) -> list[str]:
    """inet sockets (tcp/udp, v4/v6) held by ``pid`` or its children; unix sockets are fine."""
    inodes = set()
    for member in process_tree(pid):
        for fd in Path(f"/proc/{member}/fd").iterdir():
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


def echo_comes_back(to_daemon: Peer, listen: Peer):
    """A probe note echoed back by passthrough (three tries); None if it never is."""
    received = []
    for _ in range(3):
        time.sleep(0.3)
        to_daemon.command("72")
        received += listen.collect(0.5)
        if any(m.type == "note_on" for m in received):
            return received
    return None


def test_hostile_stream_through_jack(tiny_model_dir, tmp_path):
    preset = tmp_path / "fuzz.toml"
    preset.write_text("[options]\nchannel = 5\ninput_channels = [1, 2, 3]\npassthrough = true\n"
                      "passthrough_channel = 6\n\n[[knob]]\ncc = 20\ntarget = 'notes'\n\n"
                      "[[knob]]\ncc = 25\ntarget = 'freeze'\n")
    with jack_server() as server:
        def daemon_command(tag: str) -> list[str]:
            return [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet",
                    "--bpm", "300", "--model", str(tiny_model_dir), "--preset", str(preset),
                    "--virtual-in", f"{tag} in", "--virtual-out", f"{tag} out"]

        daemon, to_daemon, listen, received = daemon_with_peers(
            jack_env(server), daemon_command, echo_comes_back)
        with cleaned_up(daemon, to_daemon, listen):
            for sent, (_, message) in enumerate(hostile_stream(7, 5000), start=1):
                to_daemon.command("hex " + message.hex())
                if sent % 50 == 0:  # bursts of 50, as a flooding controller would send
                    to_daemon.command("sync")
                    time.sleep(0.002)
            assert daemon.poll() is None, daemon.stderr.read()[-2000:]
            assert len(process_tree(daemon.pid)) == 2  # the supervisor and the daemon
            assert network_sockets(daemon.pid) == []
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
            received += listen.collect(0.5)
        assert daemon.returncode == 0, daemon.stderr.read()[-2000:]
        assert sum(m.type == "note_on" for m in received) > 1  # the probe and the stream's
        assert not open_notes(received)
        assert {m.channel for m in received if hasattr(m, "channel")} <= {4, 5}
