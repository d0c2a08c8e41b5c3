"""A JACK MIDI client in its own process, driven by stdin lines, for the JACK tests.

The test process itself opens no JACK client: libjack keeps per-process state, and in CI an
in-process client of the pytest process once sent and received nothing while clients in fresh
processes worked. Modes:

  keys                 a virtual output named "keys"; a line "PITCH" plays a note, "cc C V" a CC
  send FRAGMENT        an output connected to the first port whose name holds FRAGMENT
  listen FRAGMENT      an input connected likewise; prints every message received as hex
  sink                 a virtual input named "sink" that ignores what it gets

Commands of keys/send (each answered "done" except "hex"): PITCH, "cc C V", "hex HH HH ..",
"phrase BPM P1 P2 ..." (quarter notes held for three 16ths), "sweep C FROM TO" (a hand-like knob
move), "sync". Prints "ready" once the port is open, "missing" if no port matched within 20 s.
"""

import signal
import sys
import time

import mido

BACKEND = mido.Backend("mido.backends.rtmidi/UNIX_JACK", load=True)


def find_port(kind: str, fragment: str, timeout: float = 20.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = BACKEND.get_output_names() if kind == "output" else BACKEND.get_input_names()
        found = [name for name in names if fragment in name]
        if found:
            return found[0]
        time.sleep(0.1)
    return None


def play_note(port, pitch: int, seconds: float) -> None:
    port.send(mido.Message("note_on", note=pitch, velocity=90))
    time.sleep(seconds)
    port.send(mido.Message("note_off", note=pitch))


def play_phrase(port, bpm: float, pitches: list[int], steps: int = 4) -> None:
    """One note every ``steps`` 16ths (quarter notes by default), each 3/4 of that long."""
    step = 60 / bpm / 4
    started = time.perf_counter()
    for index, pitch in enumerate(pitches):
        while time.perf_counter() < started + index * steps * step:
            time.sleep(0.0005)
        play_note(port, pitch, 0.75 * steps * step)


def sweep(port, control: int, start: int, stop: int) -> None:
    direction = 1 if stop >= start else -1
    for value in range(start, stop + direction, direction * 4):
        port.send(mido.Message("control_change", control=control, value=value))
        time.sleep(0.002)
    port.send(mido.Message("control_change", control=control, value=stop))


def serve_commands(port) -> None:
    for line in sys.stdin:
        word, *args = line.split() or [""]
        if word == "hex":
            port.send(mido.Message.from_hex(" ".join(args)))
            continue
        if word == "cc":
            port.send(mido.Message("control_change", control=int(args[0]), value=int(args[1])))
        elif word == "phrase":
            play_phrase(port, float(args[0]), [int(a) for a in args[1:]])
        elif word == "eighths":  # a jig line: one note every two 16ths
            play_phrase(port, float(args[0]), [int(a) for a in args[1:]], steps=2)
        elif word == "sweep":
            sweep(port, *(int(a) for a in args))
        elif word.isdigit():
            play_note(port, int(word), 0.05)
        print("done", flush=True)


def listen(port) -> None:
    for message in port:
        print(message.hex(), flush=True)


def leave(_signum: int, _frame: object) -> None:
    """SIGTERM: unwind, so the port and the JACK client close (a killed client can stall
    jackd's graph for the next test's clients)."""
    raise SystemExit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, leave)
    mode, fragment = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
    if mode in ("keys", "sink"):
        opener = BACKEND.open_output if mode == "keys" else BACKEND.open_input
        port = opener(mode, virtual=True, client_name=mode)
    else:
        kind = "output" if mode == "send" else "input"
        name = find_port(kind, fragment)
        if name is None:
            print("missing", flush=True)
            return
        port = BACKEND.open_output(name) if mode == "send" else BACKEND.open_input(name)
    print("ready", flush=True)
    try:
        if mode == "listen":
            listen(port)
        elif mode == "sink":
            time.sleep(600)
        else:
            serve_commands(port)
    finally:
        port.close()


if __name__ == "__main__":
    main()
