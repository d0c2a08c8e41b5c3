"""Lost and found ports through JACK: the input peer is killed and restarted, the server dies."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from jack import Peer, jack_env, jack_server

from glsr_live.supervise import STOP_DEADLINE_SECONDS

STOP_WAIT = STOP_DEADLINE_SECONDS + 7  # past the supervisor's deadline, which kills a stuck daemon

pytestmark = pytest.mark.jack


class Lines:
    """Collects a process's stderr lines in a thread."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.reader.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.02)
        return False


def stderr_tail(log: Lines) -> str:
    """The daemon's last stderr: after a stuck stop it holds every thread's stack."""
    log.reader.join(timeout=2)  # the stream ends with the process: everything it wrote is read
    return "".join(log.lines)[-6000:]


def passthrough_preset(tmp_path: Path) -> Path:
    preset = tmp_path / "echo.toml"
    preset.write_text("[options]\npassthrough = true\npassthrough_channel = 2\n")
    return preset


def test_input_peer_killed_and_restarted_is_reconnected(tiny_model_dir, tmp_path):
    with jack_server() as server:
        env = jack_env(server)
        peer = Peer(env, "keys")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet", "--in",
             "keys", "--model", str(tiny_model_dir), "--preset", str(passthrough_preset(tmp_path)),
             "--virtual-out", "reconnect out"],
            env=env, stderr=subprocess.PIPE, text=True)
        log = Lines(daemon.stderr)
        listen = None
        try:
            listen = Peer(env, "listen", "reconnect out")
            assert log.wait_for("Ctrl-C stops", 20)
            peer.kill()
            assert log.wait_for("lost", 5), log.lines
            peer = Peer(env, "keys")
            started = time.monotonic()
            assert log.wait_for("reconnected", 5), log.lines
            assert time.monotonic() - started < 2.0
            echoed = []
            for _ in range(3):  # JACK connects the reopened port asynchronously
                time.sleep(0.5)
                peer.command("72")
                echoed = [m for m in listen.collect(1.5) if m.type == "note_on"
                          and m.note == 72 and m.channel == 1]
                if echoed:
                    break
            assert echoed, "the restarted peer's note did not come through"
            assert daemon.poll() is None
        finally:
            peer.close()
            if listen is not None:
                listen.close()
            daemon.terminate()
            daemon.wait(timeout=STOP_WAIT)
        assert daemon.returncode == 0, stderr_tail(log)


def test_jack_server_going_away_is_a_clear_exit(tiny_model_dir):
    """Exit 3 with one line, whether glsr-live noticed or libjack crashed it (SIGSEGV) first."""
    with jack_server(private=True) as server:
        env = jack_env(server)
        peer = Peer(env, "keys")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet", "--in",
             "keys", "--model", str(tiny_model_dir)], env=env, stderr=subprocess.PIPE, text=True)
        log = Lines(daemon.stderr)
        assert log.wait_for("Ctrl-C stops", 20)
        subprocess.run(["pkill", "-f", f"jackd .*-n {server} "])
        try:
            daemon.wait(timeout=15)
        finally:
            peer.close()
            if daemon.poll() is None:
                daemon.kill()
        assert daemon.returncode == 3, log.lines
        assert "Traceback" not in "".join(log.lines)
        assert any(line.startswith("glsr-live run:") for line in log.lines), log.lines


def test_learn_maps_a_moved_knob_and_writes_the_preset(tiny_model_dir, tmp_path):
    with jack_server() as server:
        env = jack_env(server)
        peer = Peer(env, "keys")
        preset = tmp_path / "learned.toml"
        learn = subprocess.Popen(
            [sys.executable, "-m", "glsr_live.cli", "learn", "--api", "jack", "--in", "keys",
             "--model", str(tiny_model_dir), "--preset", str(preset)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        log = Lines(learn.stderr)
        try:
            assert log.wait_for("move a knob", 20), log.lines
            time.sleep(0.3)
            peer.command("cc 30 99")
            learn.stdin.write("register\n")
            learn.stdin.flush()
            time.sleep(1.0)
            learn.send_signal(signal.SIGINT)
            learn.wait(timeout=10)
        finally:
            peer.close()
            if learn.poll() is None:
                learn.kill()
        assert learn.returncode == 0, log.lines
        from glsr_live.knobs import load_preset

        knobs = load_preset(preset, {"notes", "register"}).knobs
        assert [(k.cc, k.target, k.channel) for k in knobs] == [(30, "register", 1)]


def test_output_peer_going_away_blocks_nothing_and_is_reconnected(tiny_model_dir):
    with jack_server() as server:
        env = jack_env(server)
        sink = Peer(env, "sink")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet", "--out",
             "sink", "--virtual-in", "sinktest in", "--model", str(tiny_model_dir)],
            env=env, stderr=subprocess.PIPE, text=True)
        log = Lines(daemon.stderr)
        try:
            assert log.wait_for("Ctrl-C stops", 20), log.lines
            sink.kill()
            assert log.wait_for("output port", 5) and log.wait_for("lost", 5), log.lines
            time.sleep(1.0)
            assert daemon.poll() is None  # still running, nothing blocked
            sink = Peer(env, "sink")
            assert log.wait_for("reconnected", 5), log.lines
        finally:
            sink.close()
            daemon.terminate()
            daemon.wait(timeout=STOP_WAIT)
        assert daemon.returncode == 0, stderr_tail(log)


def test_a_stopped_server_is_noticed_on_virtual_ports_within_two_seconds(tiny_model_dir):
    """The default virtual ports have no peer to lose, yet a stopped JACK server is one line
    and exit code 3 within 2 s, libjack's own complaints kept off the terminal."""
    with jack_server(private=True) as server:
        env = jack_env(server)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet",
             "--model", str(tiny_model_dir)], env=env, stderr=subprocess.PIPE, text=True)
        log = Lines(daemon.stderr)
        try:
            assert log.wait_for("Ctrl-C stops", 20), log.lines
            time.sleep(1.0)  # playing for a while: the view would go on saying so
            started = len(log.lines)
            subprocess.run(["pkill", "-f", f"jackd .*-n {server} "])
            killed = time.monotonic()
            daemon.wait(timeout=15)
            took = time.monotonic() - killed
        finally:
            if daemon.poll() is None:
                daemon.kill()
        after = [line for line in log.lines[started:] if line.strip()]
        assert daemon.returncode == 3, log.lines
        assert len(after) == 1 and after[0].startswith("glsr-live run:"), after
        assert "is a JACK server running?" in after[0]
        assert took <= 2.0, took
