"""A private JACK server (dummy driver) for end-to-end tests, and a MIDI client in this process."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager

import mido

JACK_BACKEND = "mido.backends.rtmidi/UNIX_JACK"


def jack_reachable(server: str) -> bool:
    env = {**os.environ, "JACK_DEFAULT_SERVER": server, "JACK_NO_START_SERVER": "1"}
    probe = "import rtmidi; rtmidi.MidiIn(rtmidi.API_UNIX_JACK).delete()"
    done = subprocess.run(["python", "-c", probe], env=env, capture_output=True, timeout=20)
    return done.returncode == 0


@contextmanager
def jack_server(private: bool = False):
    """Use $JACK_DEFAULT_SERVER when it answers (CI starts one), else start a private one."""
    existing = os.environ.get("JACK_DEFAULT_SERVER")
    if existing and not private and jack_reachable(existing):
        yield existing
        return
    if shutil.which("jackd") is None:
        raise RuntimeError("jackd is not installed: apt-get install jackd2 (see .ci/run)")
    name = f"glsr-test-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", "48000", "-p", "512"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if jack_reachable(name):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the private JACK server did not come up")
        yield name
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for_port(backend: mido.Backend, kind: str, fragment: str, timeout: float = 20.0
                  ) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = backend.get_output_names() if kind == "output" else backend.get_input_names()
        found = [n for n in names if fragment in n]
        if found:
            return found[0]
        time.sleep(0.1)
    raise TimeoutError(f"no JACK {kind} port like {fragment!r} appeared")
