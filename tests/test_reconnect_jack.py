"""Lost and found ports through JACK: the input peer is killed and restarted, the server dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mido
import pytest
from jack import JACK_BACKEND, jack_server, wait_for_port

HERE = Path(__file__).parent
pytestmark = pytest.mark.jack


class Lines:
    """Collects a process's stderr lines in a thread."""

    def __init__(self, stream):
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

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


def start_peer(env) -> subprocess.Popen:
    peer = subprocess.Popen([sys.executable, str(HERE / "peer.py"), "keys"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert peer.stdout.readline().strip() == "ready"
    return peer


def passthrough_preset(tmp_path: Path) -> Path:
    preset = tmp_path / "echo.toml"
    preset.write_text("[options]\npassthrough = true\npassthrough_channel = 2\n")
    return preset


def test_input_peer_killed_and_restarted_is_reconnected(tiny_model_dir, tmp_path):
    with jack_server() as server:
        env = {**os.environ, "JACK_DEFAULT_SERVER": server, "JACK_NO_START_SERVER": "1"}
        peer = start_peer(env)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet", "--in",
             "keys", "--model", str(tiny_model_dir), "--preset", str(passthrough_preset(tmp_path)),
             "--virtual-out", "reconnect out"],
            env=env, stderr=subprocess.PIPE, text=True)
        log = Lines(daemon.stderr)
        try:
            os.environ.update(JACK_DEFAULT_SERVER=server, JACK_NO_START_SERVER="1")
            backend = mido.Backend(JACK_BACKEND, load=True)
            listen = backend.open_input(wait_for_port(backend, "input", "reconnect out"))
            assert log.wait_for("Ctrl-C stops", 20)
            peer.kill()
            peer.wait()
            assert log.wait_for("lost", 5), log.lines
            peer = start_peer(env)
            started = time.monotonic()
            assert log.wait_for("reconnected", 5), log.lines
            assert time.monotonic() - started < 2.0
            echoed = []
            for _ in range(3):  # JACK connects the reopened port asynchronously
                time.sleep(0.5)
                peer.stdin.write("72\n")
                peer.stdin.flush()
                deadline = time.monotonic() + 1.5
                while time.monotonic() < deadline and not echoed:
                    echoed = [m for m in listen.iter_pending() if m.type == "note_on"
                              and m.note == 72 and m.channel == 1]
                    time.sleep(0.005)
                if echoed:
                    break
            assert echoed, "the restarted peer's note did not come through"
            assert daemon.poll() is None
        finally:
            peer.kill()
            daemon.terminate()
            daemon.wait(timeout=10)
        assert daemon.returncode == 0


@pytest.mark.xfail(strict=False, reason="libjack sometimes kills the client with SIGSEGV when "
                   "the server dies, before glsr-live can notice (seen in CI); see issue 6")
def test_jack_server_going_away_is_a_clear_exit(tiny_model_dir):
    with jack_server(private=True) as server:
        env = {**os.environ, "JACK_DEFAULT_SERVER": server, "JACK_NO_START_SERVER": "1"}
        peer = start_peer(env)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet", "--in",
             "keys", "--model", str(tiny_model_dir)], env=env, stderr=subprocess.PIPE, text=True)
        log = Lines(daemon.stderr)
        assert log.wait_for("Ctrl-C stops", 20)
        subprocess.run(["pkill", "-f", f"jackd -n {server}"])
        try:
            daemon.wait(timeout=15)
        finally:
            peer.kill()
            if daemon.poll() is None:
                daemon.kill()
        assert daemon.returncode == 3, log.lines
        assert "Traceback" not in "".join(log.lines)


def test_learn_maps_a_moved_knob_and_writes_the_preset(tiny_model_dir, tmp_path):
    with jack_server() as server:
        env = {**os.environ, "JACK_DEFAULT_SERVER": server, "JACK_NO_START_SERVER": "1"}
        peer = start_peer(env)
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
            peer.stdin.write("cc 30 99\n")
            peer.stdin.flush()
            learn.stdin.write("register\n")
            learn.stdin.flush()
            time.sleep(1.0)
            learn.send_signal(signal.SIGINT)
            learn.wait(timeout=10)
        finally:
            peer.kill()
            if learn.poll() is None:
                learn.kill()
        assert learn.returncode == 0, log.lines
        from glsr_live.knobs import load_preset

        knobs = load_preset(preset, {"notes", "register"}).knobs
        assert [(k.cc, k.target, k.channel) for k in knobs] == [(30, "register", 1)]


SINK = ("import sys, time, mido\n"
        "b = mido.Backend('mido.backends.rtmidi/UNIX_JACK', load=True)\n"
        "p = b.open_input('sink', virtual=True, client_name='sink')\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n")


def start_sink(env) -> subprocess.Popen:
    sink = subprocess.Popen([sys.executable, "-c", SINK], env=env, stdout=subprocess.PIPE,
                            text=True)
    assert sink.stdout.readline().strip() == "ready"
    return sink


def test_output_peer_going_away_blocks_nothing_and_is_reconnected(tiny_model_dir):
    with jack_server() as server:
        env = {**os.environ, "JACK_DEFAULT_SERVER": server, "JACK_NO_START_SERVER": "1"}
        sink = start_sink(env)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet", "--out",
             "sink", "--virtual-in", "sinktest in", "--model", str(tiny_model_dir)],
            env=env, stderr=subprocess.PIPE, text=True)
        log = Lines(daemon.stderr)
        try:
            assert log.wait_for("Ctrl-C stops", 20), log.lines
            sink.kill()
            sink.wait()
            assert log.wait_for("output port", 5) and log.wait_for("lost", 5), log.lines
            time.sleep(1.0)
            assert daemon.poll() is None  # still running, nothing blocked
            sink = start_sink(env)
            assert log.wait_for("reconnected", 5), log.lines
        finally:
            sink.kill()
            daemon.terminate()
            daemon.wait(timeout=10)
        assert daemon.returncode == 0
