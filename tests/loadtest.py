"""Load test: live sessions through a real JACK server while other work keeps the cores busy.

    python tests/loadtest.py --sessions 30 --seconds 30 --load 2 [--bpm 120] [--json OUT]

Each session starts `glsr-live run` (two models, --record) on a JACK server (a private one
unless $JACK_DEFAULT_SERVER answers), and this process plays into it from an outside client:
two-bar phrases, a new phrase every other loop, fast knob sweeps (CC 20, 21, 30) and a Program
Change every few seconds, while a second outside client listens, stamping every message in
rtmidi's callback. ``--load N`` starts N busy processes for the whole run. Counted at the
listener, per session and in all:

* ``left_sounding``: times more than one voice (another pitch, or the same pitch struck twice)
  sounded on the player's channel for longer than ``--hang`` seconds, plus voices still sounding
  after the daemon stopped. The player is monophonic: at the listener one voice at a time.
* ``lost``: note messages the daemon recorded as sent that the listener never received.
* ``late_ms``: each note's onset at the listener against its grid time (the daemon's internal
  clock, from the recording), p50 / p99; and ``send_late_ms``: the same at the daemon's send.
* ``replay_identical``: `render --replay` of the session's recording gives the notes played.
* The same voices and lost messages (``left_sounding_dump``, ``lost_dump``) at a second
  outside listener, jack2's own ``jack_midi_dump`` (C, no Python): when the first listener
  misses messages, this one tells whether the daemon's client or the listener's missed them.
* ``silent``: sessions in which the listener heard nothing at all although the daemon sent
  notes: its JACK client's thread never ran (README, "When things go wrong"; jack_midi_dump
  heard those sessions whole). Such a session is run again once, and counted; one silent
  again is left out of the first listener's counts (``sessions_heard``).

Exit status 1 when any note was left sounding or a replay differed. The JACK tests run a short
version in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import mido
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from jack import jack_env, jack_server  # noqa: E402
from peer import BACKEND, find_port  # noqa: E402  (clients read the server from the env on open)

from glsr_live.daemon import raise_threads  # noqa: E402
from glsr_live.record import read_session  # noqa: E402
from glsr_live.replay import replay_file  # noqa: E402

PHRASES = ([60, 62, 64, 65, 67, 65, 64, 62], [67, 67, 69, 67, 72, 71, 69, 67],
           [64, 64, 65, 67, 67, 65, 64, 62], [72, 71, 69, 67, 65, 64, 62, 60])
KNOBS = (20, 21, 30)
BUSY = "import time\nwhile True:\n    sum(range(10000))\n"


class Listener:
    """An input connected to the daemon's output; every message stamped in rtmidi's thread."""

    def __init__(self, port_name: str):
        self.messages: list[tuple[float, mido.Message]] = []
        self.port = BACKEND.open_input(port_name, callback=self.receive)

    def receive(self, message: mido.Message) -> None:
        self.messages.append((time.perf_counter(), message))

    def close(self) -> None:
        self.port.close()


def play_phrase(port, start: float, step: float, pitches: list[int], stop: threading.Event
                ) -> None:
    """Quarter notes held for three 16ths, the first at ``start``."""
    for index, pitch in enumerate(pitches):
        for at, message in ((start + 4 * index * step, "note_on"),
                            (start + (4 * index + 3) * step, "note_off")):
            while time.perf_counter() < at:
                if stop.is_set():
                    return
                time.sleep(0.0005)
            port.send(mido.Message(message, note=pitch, velocity=90 if message == "note_on"
                                   else 0))


def turn_knobs(port, rng: random.Random, stop: threading.Event, models: int) -> None:
    """Fast sweeps (a value every 2 ms) on random knobs, and a Program Change every 3-6 s."""
    next_swap = time.perf_counter() + rng.uniform(3, 6)
    while not stop.wait(rng.uniform(0.1, 0.4)):
        control, low, high = rng.choice(KNOBS), rng.randrange(0, 64), rng.randrange(64, 128)
        values = range(low, high, 3) if rng.random() < 0.5 else range(high, low, -3)
        for value in values:
            port.send(mido.Message("control_change", control=control, value=value))
            time.sleep(0.002)
        if time.perf_counter() >= next_swap and models > 1:
            port.send(mido.Message("program_change", program=rng.randrange(models)))
            next_swap = time.perf_counter() + rng.uniform(3, 6)


def run_session(index: int, seconds: float, bpm: float, workdir: Path, env: dict,
                models: list[str]) -> dict:
    """One daemon, one player, one listener; the counts of ``analyse``."""
    tag = f"lt-{uuid.uuid4().hex[:6]}"
    record = workdir / f"session-{index}"
    command = [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet",
               "--virtual-in", f"{tag} in", "--virtual-out", f"{tag} out", "--bpm", str(bpm),
               "--record", str(record), "--seed", str(index)]
    for model in models:
        command += ["--model", model]
    record.mkdir(parents=True, exist_ok=True)
    with open(record / "daemon.log", "w") as log:  # a file: an orphan cannot block a pipe
        daemon = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    stop = threading.Event()
    listener = player = dump = None
    try:
        out_name, in_name = find_port("input", f"{tag} out"), find_port("output", f"{tag} in")
        if out_name is None or in_name is None:
            raise RuntimeError(f"session {index}: the daemon's ports did not appear")
        listener = Listener(out_name)
        dump = start_dump(out_name, f"{tag}-dump", record)
        player = BACKEND.open_output(in_name)
        raise_threads()  # the listener is not what is measured: its JACK threads first too
        time.sleep(0.5)  # JACK connects asynchronously
        step = 60.0 / bpm / 4
        rng = random.Random(index)
        knobs = threading.Thread(target=turn_knobs, args=(player, rng, stop, len(models)),
                                 daemon=True)
        start = time.perf_counter() + 0.1
        loop = 32 * step
        loops = int(seconds / loop)
        for number in range(loops):
            if number == 1:
                knobs.start()
            if number % 2 == 0:
                play_phrase(player, start + number * loop, step, rng.choice(PHRASES), stop)
            while time.perf_counter() < start + (number + 1) * loop:
                time.sleep(0.01)
        stop.set()
        if knobs.is_alive():
            knobs.join()
    finally:
        stop.set()
        stopped_at = time.perf_counter()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        stderr = (record / "daemon.log").read_text()
        time.sleep(0.5)  # the last note-offs reach the listener
        if listener is not None:
            listener.close()
        if dump is not None:
            dump.terminate()
            dump.wait(timeout=10)
        if player is not None:
            player.close()
    sessions = sorted(record.glob("session-*.mid"))
    if not sessions:
        raise RuntimeError(f"session {index}: no recording; daemon said {stderr[-300:]!r}")
    if os.environ.get("LT_DEBUG"):
        print(stderr[-4000:], file=sys.stderr)
    result = analyse(listener.messages, sessions[0], bpm, dump_messages(record / "dump.txt"))
    result["replay_identical"] = replay_file(sessions[0], record / "replay.mid")["identical"]
    result["exit_code"] = daemon.returncode
    result["stopped_at"] = round(stopped_at - read_session(sessions[0]).settings["started"], 3)
    return result


def start_dump(port: str, client: str, folder: Path) -> subprocess.Popen | None:
    """jack_midi_dump listening to ``port`` (None where it is not installed)."""
    if shutil.which("jack_midi_dump") is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "dump.txt", "w") as out:
        dump = subprocess.Popen(["jack_midi_dump", "-a", client], stdout=out,
                                stderr=subprocess.DEVNULL)
    for _ in range(50):
        done = subprocess.run(["jack_connect", port, f"{client}:input"], capture_output=True)
        if done.returncode == 0:
            return dump
        time.sleep(0.1)
    dump.kill()
    return None


def dump_messages(path: Path, rate: float = 48000.0) -> list[tuple[float, mido.Message]]:
    """jack_midi_dump -a lines ('FRAMES: 90 3c 5a note on ...') as (seconds, message); the
    dummy driver runs at 48 kHz."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        frames, _, rest = line.partition(":")
        data = []
        for word in rest.split():
            if len(word) != 2:
                break
            data.append(int(word, 16))
        try:
            out.append((int(frames) / rate, mido.Message.from_bytes(data)))
        except (ValueError, KeyError, IndexError):
            continue
    return out


def count_lost(sent: list[tuple[float, mido.Message]], heard: list[tuple[float, mido.Message]]
               ) -> int:
    """Sent note messages never heard, counted per (kind, channel, pitch)."""
    want: dict[tuple, int] = {}
    for _, message in sent:
        want[note_key(message)] = want.get(note_key(message), 0) + 1
    for _, message in heard:
        if message.type in ("note_on", "note_off") and note_key(message) in want:
            want[note_key(message)] -= 1
    return sum(max(0, count) for count in want.values())


def voices_left(messages: list[tuple[float, mido.Message]], channel: int, hang: float
                ) -> tuple[int, list[float]]:
    """(episodes of more than one voice for longer than ``hang`` s, their lengths); voices
    still sounding at the end count as episodes of their own."""
    voices: dict[int, int] = {}
    since: float | None = None
    episodes: list[float] = []
    for stamp, message in messages:
        if getattr(message, "channel", None) != channel:
            continue
        if message.type == "note_on" and message.velocity > 0:
            voices[message.note] = voices.get(message.note, 0) + 1
        elif message.type in ("note_on", "note_off"):
            voices[message.note] = max(0, voices.get(message.note, 0) - 1)
        elif message.type == "control_change" and message.control == 123:
            voices.clear()
        excess = sum(voices.values()) > 1
        if excess and since is None:
            since = stamp
        elif not excess and since is not None:
            if stamp - since > hang:
                episodes.append(stamp - since)
            since = None
    left = sum(voices.values())
    return sum(1 for _ in episodes) + left, episodes


def note_key(message: mido.Message) -> tuple:
    on = message.type == "note_on" and message.velocity > 0
    return ("on" if on else "off", message.channel, message.note)


def analyse(heard: list[tuple[float, mido.Message]], session_file: Path, bpm: float,
            dumped: list[tuple[float, mido.Message]], hang: float = 0.3) -> dict:
    """Counts at both listeners: this process's (timed against the grid) and jack_midi_dump's
    (its own clock: voices and lost messages only)."""
    session = read_session(session_file)
    zero = session.settings["started"]
    step = 60.0 / bpm / 4
    first_in = next(s for s, m in session.incoming if m.type == "note_on" and m.velocity > 0)
    origin = zero + first_in  # the internal clock's step 0, on this machine's clock
    sent = [(zero + s, m) for s, m in session.outgoing if m.type in ("note_on", "note_off")]
    notes_heard = [(s, m) for s, m in heard if m.type in ("note_on", "note_off")]
    left, episodes = voices_left(heard, 0, hang)
    late, send_late, lost = match(sent, notes_heard, origin, step)
    left_dump, episodes_dump = voices_left(dumped, 0, hang)
    return {"left_sounding": left, "episodes_s": [round(e, 3) for e in episodes],
            "left_sounding_dump": left_dump if dumped else None,
            "episodes_dump_s": [round(e, 3) for e in episodes_dump],
            "lost_dump": count_lost(sent, dumped) if dumped else None,
            "dump_notes": len(dumped),
            "lost": len(lost), "lost_at": [(round(s - zero, 3), k) for s, k in lost[:20]],
            "sent_notes": sum(note_key(m)[0] == "on" for _, m in sent),
            "late_ms": late, "send_late_ms": send_late}


def match(sent, heard, origin: float, step: float) -> tuple[list[float], list[float], int]:
    """Pair each sent note message with the first heard one of the same kind after it (within
    a second); returns listener lateness and send lateness of onsets (ms), and the unpaired
    (when sent, what)."""
    pending: dict[tuple, list[float]] = {}
    for stamp, message in heard:
        pending.setdefault(note_key(message), []).append(stamp)
    late, send_late, lost = [], [], []
    for stamp, message in sent:
        queue = pending.get(note_key(message), [])
        while queue and queue[0] < stamp - 0.001:
            queue.pop(0)  # heard before it was sent: belongs to an earlier one
        if not queue or queue[0] > stamp + 1.0:
            lost.append((stamp, note_key(message)))
            continue
        arrived = queue.pop(0)
        if note_key(message)[0] == "on":
            grid = origin + np.floor((stamp - origin) / step + 1e-6) * step
            late.append(1000 * (arrived - grid))
            send_late.append(1000 * (stamp - grid))
    return late, send_late, lost


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    array = np.asarray(values)
    return {"p50": round(float(np.percentile(array, 50)), 2),
            "p99": round(float(np.percentile(array, 99)), 2), "max": round(float(array.max()), 2)}


def start_load(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--load", type=int, default=2, help="busy processes beside the test")
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--first", type=int, default=0, help="number of the first session "
                        "(its seed: a session is reproducible by its number)")
    parser.add_argument("--model", action="append", default=None,
                        help="models to load (default: melody, bach-soprano)")
    parser.add_argument("--json", type=Path, help="write every session's counts here")
    parser.add_argument("--keep", type=Path, help="keep the sessions' recordings in this folder")
    args = parser.parse_args(argv)
    models = args.model or ["melody", "bach-soprano"]
    results, silent = [], []
    with ExitStack() as stack:
        server = stack.enter_context(jack_server())
        env = jack_env(server)
        os.environ.update(env)
        workdir = args.keep or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="glsr-load-")))
        load = start_load(args.load)
        stack.callback(lambda: [process.kill() for process in load])
        began = time.perf_counter()
        for index in range(args.first, args.first + args.sessions):
            result = run_session(index, args.seconds, args.bpm, workdir, env, models)
            if is_silent(result):  # the listener's JACK client never ran: once more, counted
                silent.append(index)
                result = run_session(index, args.seconds, args.bpm, workdir, env, models)
            result["listener_silent"] = is_silent(result)
            results.append(result)
            done = index + 1 - args.first
            eta = (time.perf_counter() - began) / done * (args.sessions - done)
            print(f"session {done}/{args.sessions}: left sounding {result['left_sounding']} / "
                  f"{result['left_sounding_dump']} (jack_midi_dump), lost {result['lost']} / "
                  f"{result['lost_dump']}, late p99 "
                  f"{percentiles(result['late_ms'])['p99']} ms, replay "
                  f"{'identical' if result['replay_identical'] else 'DIFFERS'}, exit "
                  f"{result['exit_code']}; "
                  f"ETA {eta:.0f} s", file=sys.stderr, flush=True)
    summary = {**summarise(results, args), "silent_sessions_rerun": silent}
    print(json.dumps(summary, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "sessions": results}))
    failed = summary["left_sounding"] or summary["left_sounding_dump"] \
        or summary["replays_differing"]
    return 1 if failed else 0


def is_silent(result: dict) -> bool:
    """The daemon sent notes and not one of their onsets was heard."""
    return result["sent_notes"] > 0 and not result["late_ms"]


def summarise(results: list[dict], args: argparse.Namespace) -> dict:
    heard = [r for r in results if not r["listener_silent"]]  # sessions the listener heard
    dumped = [r for r in results if r["left_sounding_dump"] is not None]
    return {"sessions": len(results), "seconds": args.seconds, "load": args.load,
            "bpm": args.bpm, "left_sounding": sum(r["left_sounding"] for r in heard),
            "left_sounding_dump": sum(r["left_sounding_dump"] for r in dumped),
            "sessions_heard": len(heard), "sessions_dumped": len(dumped),
            "lost": sum(r["lost"] for r in heard),
            "lost_dump": sum(r["lost_dump"] for r in dumped),
            "note_messages_sent": sum(2 * r["sent_notes"] for r in results),
            "late_ms": percentiles([v for r in heard for v in r["late_ms"]]),
            "send_late_ms": percentiles([v for r in results for v in r["send_late_ms"]]),
            "exit_codes": sorted({r["exit_code"] for r in results}),
            "replays_differing": sum(not r["replay_identical"] for r in results)}


if __name__ == "__main__":
    sys.exit(main())
