"""A live session as a standard MIDI file: what came in, what went out, and the knob state.

Tracks: ``in`` (every message received: notes, CCs, clock), ``out`` (every message sent, at
the engine time it was made for) and
``knobs`` (a text event at each knob change, plus the session's settings at the start). Times
are wall-clock seconds since the session began, written at the session's tempo (960 ticks a
beat; a MIDI clock's tempo changes become tempo events), so a DAW shows the session on its own
beat grid. The daemon hands the engine times floored to this tick (``quantise``): a replay
reads back exactly the times the live engine saw.

Crash safety: each track's events are appended, already encoded, to an in-memory byte buffer;
about once a second a background thread writes header + tracks to a temporary file and renames
it over the session file. A SIGKILL loses at most what came since the last write, and the file
on disk is always a whole, valid MIDI file.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mido

from .errors import MidiFileError
from .midifile import open_midi, signature_event

TICKS_PER_BEAT = 960  # at 240 BPM a tick is 0.26 ms
TEMPO_CHANGE_BPM = 0.25  # a MIDI clock's tempo is written again when it moved this far
TRACKS = ("in", "out", "knobs")
FLUSH_SECONDS = 1.0
PRIVATE_ID = 0x7D  # the MIDI manufacturer ID for non-commercial use
END_TEXT = "glsr-live end"
SILENT_TEXT = "glsr-live silent "  # + grid steps the live loop reached too late to sound
STALL_TEXT = "glsr-live stall "  # + from, to: seconds in which the live loop did not tick


def variable_length(value: int) -> bytes:
    """MIDI's variable-length quantity (7 bits a byte, high bit = more follows)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def meta_bytes(kind: int, data: bytes) -> bytes:
    return bytes([0xFF, kind]) + variable_length(len(data)) + data


def tempo_of(bpm: float) -> int:
    """Microseconds per beat, as a MIDI tempo event holds it."""
    return int(round(60_000_000 / bpm))


class TempoMap:
    """Seconds <-> ticks through a file's tempo changes. The recorder and the reader build it
    with the same arithmetic, so a time written as a tick reads back as the very same float."""

    def __init__(self, tempo: int, ticks_per_beat: int = TICKS_PER_BEAT):
        self.ticks_per_beat = ticks_per_beat
        self.ticks = [0]  # where each tempo starts
        self.starts = [0.0]  # ... in seconds
        self.tempos = [tempo]  # microseconds per beat

    def seconds(self, tick: int) -> float:
        index = bisect.bisect_right(self.ticks, tick) - 1
        return self.starts[index] + (tick - self.ticks[index]) * self.tempos[index] \
            / 1e6 / self.ticks_per_beat

    def tick(self, seconds: float) -> int:
        """The tick at or before ``seconds`` (a hair of slack: tick(seconds(k)) == k)."""
        index = max(0, bisect.bisect_right(self.starts, seconds) - 1)
        span = (seconds - self.starts[index]) * 1e6 * self.ticks_per_beat / self.tempos[index]
        return self.ticks[index] + math.floor(span + 1e-6)

    def change(self, tick: int, tempo: int) -> None:
        """A new tempo from ``tick`` on (ticks at or after the last change)."""
        if tick == self.ticks[-1]:
            self.tempos[-1] = tempo
            return
        self.starts.append(self.seconds(tick))
        self.ticks.append(tick)
        self.tempos.append(tempo)

    @property
    def bpm(self) -> float:
        return 60_000_000 / self.tempos[-1]


@dataclass
class TrackBuffer:
    """One track's encoded events so far and the tick of its last event."""

    name: str
    data: bytearray = field(default_factory=bytearray)
    last_tick: int = 0

    def __post_init__(self) -> None:
        self.data += variable_length(0) + meta_bytes(0x03, self.name.encode())

    def append(self, tick: int, event: bytes) -> None:
        tick = max(tick, self.last_tick)
        self.data += variable_length(tick - self.last_tick) + event
        self.last_tick = tick

    def chunk(self) -> bytes:
        body = bytes(self.data) + variable_length(0) + meta_bytes(0x2F, b"")  # end of track
        return b"MTrk" + struct.pack(">I", len(body)) + body


class SessionRecorder:
    """Appends messages as they happen; ``flush`` makes the file on disk current."""

    def __init__(self, path: Path, settings: dict, clock=time.monotonic, bpm: float = 120.0):
        self.path, self.clock = Path(path), clock
        self.started = clock()
        self.tempo = TempoMap(tempo_of(bpm))
        self.tracks = {name: TrackBuffer(name) for name in TRACKS}
        self.tracks["in"].append(0, tempo_event(self.tempo.tempos[0]))
        if settings.get("metre"):  # a DAW draws the session's bars in the metre played
            signature = signature_event(settings["metre"])  # mido encodes it
            self.tracks["in"].append(0, bytes(signature.bytes()))
        # started: the session's zero on this machine's clock (perf_counter: CLOCK_MONOTONIC),
        # so another program's timestamps can be laid against the file's
        settings = {**settings, "started": self.started}
        self.text("knobs", "glsr-live " + json.dumps(settings, sort_keys=True), 0.0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush()
        self.writer = LatestWriter(self.write)

    def tick_of(self, seconds: float) -> int:
        return self.tempo.tick(seconds)

    def quantise(self, seconds: float) -> float:
        """``seconds`` floored to the file's tick: the time a replay will read back."""
        return self.tempo.seconds(self.tempo.tick(seconds))

    def seconds(self) -> float:
        return self.clock() - self.started

    def follow_tempo(self, bpm: float, seconds: float) -> None:
        """A tempo event when a MIDI clock's tempo has moved; times after it use it."""
        if abs(bpm - self.tempo.bpm) < TEMPO_CHANGE_BPM:
            return
        tick = self.tick_of(seconds)
        self.tempo.change(tick, tempo_of(bpm))
        self.tracks["in"].append(tick, tempo_event(self.tempo.tempos[-1]))

    def message(self, track: str, message: mido.Message, seconds: float | None = None) -> None:
        """Record one MIDI message on ``track`` at ``seconds`` (default: now).

        Channel messages go in as they are; clock, start, stop, continue and song position
        are not allowed in a MIDI file, so they go in a sequencer-specific meta event
        (non-commercial ID 0x7D) that DAWs skip and ``read_session`` turns back into them.
        """
        if message.is_meta or message.type == "sysex":
            return
        at = self.seconds() if seconds is None else seconds
        raw = bytes(message.bin())
        event = raw if raw[0] < 0xF0 else meta_bytes(0x7F, bytes([PRIVATE_ID]) + raw)
        self.tracks[track].append(self.tick_of(at), event)

    def text(self, track: str, text: str, seconds: float | None = None) -> None:
        at = self.seconds() if seconds is None else seconds
        self.tracks[track].append(self.tick_of(at), meta_bytes(0x01, text.encode()))

    def knobs(self, state: dict, seconds: float | None = None) -> None:
        self.text("knobs", json.dumps(state, sort_keys=True), seconds)

    def stall(self, since: float, until: float) -> None:
        """The loop did not tick from ``since`` to ``until`` (engine seconds)."""
        self.text("knobs", f"{STALL_TEXT}{since!r} {until!r}", until)

    def silent(self, steps: list[int], seconds: float) -> None:
        """Steps the engine played silently (a stalled machine), for the replay to do so too."""
        self.text("knobs", SILENT_TEXT + " ".join(map(str, steps)), seconds)

    def end(self, seconds: float | None = None) -> None:
        """Mark where the session stopped (a replay plays up to here) and flush."""
        self.text("knobs", END_TEXT, seconds)
        self.writer.close()
        self.flush()

    def maybe_flush(self) -> None:
        """Once a second, hand the file's bytes to the writer thread: the loop never waits
        for a disk (an fsync on a busy machine can take tens of milliseconds)."""
        if self.clock() - self.last_flush < FLUSH_SECONDS:
            return
        self.last_flush = self.clock()
        self.writer.submit(self.contents())

    def contents(self) -> bytes:
        header = b"MThd" + struct.pack(">IHHH", 6, 1, len(self.tracks), TICKS_PER_BEAT)
        return header + b"".join(t.chunk() for t in self.tracks.values())

    def drain(self) -> None:
        """Wait until the writer has written what it was handed (tests)."""
        self.writer.drain()

    def flush(self) -> None:
        self.write(self.contents())
        self.last_flush = self.clock()

    def write(self, data: bytes) -> None:
        """The whole file to a temporary name, renamed over the session file."""
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


class LatestWriter:
    """A thread that writes the newest bytes it was handed; a newer hand-over replaces one
    still waiting, so a slow disk delays the file but never makes it older than that."""

    def __init__(self, write):
        self.write = write
        self.condition = threading.Condition()
        self.waiting: bytes | None = None
        self.busy = self.closed = False
        self.thread = threading.Thread(target=self.run, name="glsr-record", daemon=True)
        self.thread.start()

    def submit(self, data: bytes) -> None:
        with self.condition:
            self.waiting = data
            self.condition.notify_all()

    def run(self) -> None:
        while True:
            with self.condition:
                self.condition.wait_for(lambda: self.waiting is not None or self.closed)
                if self.waiting is None:
                    return
                data, self.waiting, self.busy = self.waiting, None, True
            try:
                self.write(data)
            except OSError:  # a full disk: the next second tries again; end() reports
                pass
            with self.condition:
                self.busy = False
                self.condition.notify_all()

    def drain(self) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.waiting is None and not self.busy)

    def close(self) -> None:
        """Let a write in progress finish, drop a waiting one (the caller writes last)."""
        with self.condition:
            self.closed, self.waiting = True, None
            self.condition.notify_all()
        self.thread.join(timeout=5.0)


def tempo_event(tempo: int) -> bytes:
    return meta_bytes(0x51, tempo.to_bytes(3, "big"))


def session_path(folder: Path) -> Path:
    """A new file name in ``folder``: session-YYYYmmdd-HHMMSS.mid (numbered if taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(folder) / f"session-{stamp}.mid"
    index = 1
    while path.exists():
        index += 1
        path = Path(folder) / f"session-{stamp}-{index}.mid"
    return path


# ---------------------------------------------------------------- reading a session back


@dataclass
class Session:
    settings: dict
    incoming: list[tuple[float, mido.Message]]  # (seconds, message)
    outgoing: list[tuple[float, mido.Message]]
    knob_states: list[tuple[float, dict]]
    ended: float | None = None  # when the daemon stopped (None: killed before it could say)
    silent: set[int] = field(default_factory=set)  # steps the live loop reached too late
    stalls: list[tuple[float, float]] = field(default_factory=list)  # (from, to) no ticks


def read_session(path: Path) -> Session:
    """The three tracks of a recorded session, timed in seconds through its tempo map."""
    midi = open_midi(path)
    tracks = {}
    for track in midi.tracks:
        name = next((m.name for m in track if m.type == "track_name"), "")
        tracks[name] = track
    missing = [name for name in TRACKS if name not in tracks]
    if missing:
        raise MidiFileError(f"{path}: not a glsr-live session (no track {missing[0]!r})")
    tempo = tempo_map(midi)
    settings, knob_states, ended, silent, stalls = {}, [], None, set(), []
    for seconds, message in timed(tracks["knobs"], tempo):
        if message.type == "text" and message.text == END_TEXT:
            ended = seconds
        elif message.type == "text" and message.text.startswith(SILENT_TEXT):
            silent |= {int(step) for step in message.text.removeprefix(SILENT_TEXT).split()}
        elif message.type == "text" and message.text.startswith(STALL_TEXT):
            stalls.append(tuple(float(x) for x in message.text.removeprefix(STALL_TEXT).split()))
        elif message.type == "text" and message.text.startswith("glsr-live "):
            settings = json.loads(message.text.removeprefix("glsr-live "))
        elif message.type == "text":
            knob_states.append((seconds, json.loads(message.text)))
    return Session(settings, messages_of(tracks["in"], tempo),
                   messages_of(tracks["out"], tempo), knob_states, ended, silent, stalls)


def tempo_map(midi: mido.MidiFile) -> TempoMap:
    """Every track's tempo events, in order (a file without any is at 120 BPM)."""
    changes = []
    for track in midi.tracks:
        ticks = 0
        for message in track:
            ticks += message.time
            if message.type == "set_tempo":
                changes.append((ticks, message.tempo))
    changes.sort(key=lambda change: change[0])
    tempo = TempoMap(changes[0][1] if changes and changes[0][0] == 0 else 500_000,
                     midi.ticks_per_beat)
    for tick, value in changes:
        tempo.change(tick, value)
    return tempo


def timed(track: mido.MidiTrack, tempo: TempoMap) -> list[tuple[float, mido.Message]]:
    ticks, out = 0, []
    for message in track:
        ticks += message.time
        out.append((tempo.seconds(ticks), message))
    return out


def messages_of(track: mido.MidiTrack, tempo: TempoMap) -> list[tuple[float, mido.Message]]:
    """The MIDI messages of a track, system messages unwrapped from their meta events."""
    out = []
    for seconds, message in timed(track, tempo):
        if not message.is_meta:
            out.append((seconds, message.copy(time=0)))
        elif message.type == "sequencer_specific" and message.data[:1] == (PRIVATE_ID,):
            out.append((seconds, mido.Message.from_bytes(list(message.data[1:]))))
    return out
