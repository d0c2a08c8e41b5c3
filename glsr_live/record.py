"""A live session as a standard MIDI file: what came in, what went out, and the knob state.

Tracks: ``in`` (every message received: notes, CCs, clock), ``out`` (every message sent) and
``knobs`` (a text event at each knob change, plus the session's settings at the start). Times
are wall-clock seconds since the session began, at 120 BPM and 480 ticks per beat (960 ticks a
second), so any DAW places them as they happened.

Crash safety: each track's events are appended, already encoded, to an in-memory byte buffer;
``flush()`` (the daemon calls it about once a second) writes header + tracks to a temporary file
and renames it over the session file. A SIGKILL loses at most what came since the last flush,
and the file on disk is always a whole, valid MIDI file.
"""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import mido

from .errors import MidiFileError
from .midifile import open_midi

TICKS_PER_BEAT = 480
TEMPO = 500_000  # microseconds per beat: 120 BPM, so a tick is 1/960 s
TICKS_PER_SECOND = TICKS_PER_BEAT * 1_000_000 / TEMPO
TRACKS = ("in", "out", "knobs")
FLUSH_SECONDS = 1.0
PRIVATE_ID = 0x7D  # the MIDI manufacturer ID for non-commercial use
END_TEXT = "glsr-live end"


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

    def __init__(self, path: Path, settings: dict, clock=time.monotonic):
        self.path, self.clock = Path(path), clock
        self.started = clock()
        self.tracks = {name: TrackBuffer(name) for name in TRACKS}
        tempo = meta_bytes(0x51, TEMPO.to_bytes(3, "big"))
        self.tracks["in"].append(0, tempo)
        self.text("knobs", "glsr-live " + json.dumps(settings, sort_keys=True), 0.0)
        self.last_flush = -FLUSH_SECONDS
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush()

    def tick_of(self, seconds: float) -> int:
        return int(round(seconds * TICKS_PER_SECOND))

    def seconds(self) -> float:
        return self.clock() - self.started

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

    def end(self, seconds: float | None = None) -> None:
        """Mark where the session stopped (a replay plays up to here) and flush."""
        self.text("knobs", END_TEXT, seconds)
        self.flush()

    def maybe_flush(self) -> None:
        if self.clock() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the whole file to a temporary name and rename it over the session file."""
        header = b"MThd" + struct.pack(">IHHH", 6, 1, len(self.tracks), TICKS_PER_BEAT)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(header + b"".join(t.chunk() for t in self.tracks.values()))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        self.last_flush = self.clock()


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


def read_session(path: Path) -> Session:
    """The three tracks of a recorded session, timed in seconds."""
    midi = open_midi(path)
    tracks = {}
    for track in midi.tracks:
        name = next((m.name for m in track if m.type == "track_name"), "")
        tracks[name] = track
    missing = [name for name in TRACKS if name not in tracks]
    if missing:
        raise MidiFileError(f"{path}: not a glsr-live session (no track {missing[0]!r})")
    settings, knob_states, ended = {}, [], None
    for seconds, message in timed(tracks["knobs"]):
        if message.type == "text" and message.text == END_TEXT:
            ended = seconds
        elif message.type == "text" and message.text.startswith("glsr-live "):
            settings = json.loads(message.text.removeprefix("glsr-live "))
        elif message.type == "text":
            knob_states.append((seconds, json.loads(message.text)))
    return Session(settings, messages_of(tracks["in"]), messages_of(tracks["out"]),
                   knob_states, ended)


def timed(track: mido.MidiTrack) -> list[tuple[float, mido.Message]]:
    ticks, out = 0, []
    for message in track:
        ticks += message.time
        out.append((ticks / TICKS_PER_SECOND, message))
    return out


def messages_of(track: mido.MidiTrack) -> list[tuple[float, mido.Message]]:
    """The MIDI messages of a track, system messages unwrapped from their meta events."""
    out = []
    for seconds, message in timed(track):
        if not message.is_meta:
            out.append((seconds, message.copy(time=0)))
        elif message.type == "sequencer_specific" and message.data[:1] == (PRIVATE_ID,):
            out.append((seconds, mido.Message.from_bytes(list(message.data[1:]))))
    return out
