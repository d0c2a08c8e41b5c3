"""Replay a recorded session offline through the same engine, and compare with what it played.

The recording holds the models, the preset itself, clock, tempo and seed, and every incoming
message with its time. The live daemon plays the steps due before each message before handling
it, so feeding the same messages at the same times gives the same output, note for note.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from .clock import InternalClock, MidiClock
from .engine import Engine
from .errors import MidiFileError
from .knobs import parse_preset
from .model import Model
from .record import TICKS_PER_BEAT, Session, TempoMap, read_session, tempo_of

TAIL_SECONDS = 1.0  # a killed session (no end mark): tick this long after its last note
TICK_SECONDS = 0.001


@dataclass(frozen=True)
class GridNote:
    pitch: int
    step: int  # onset, in grid steps from the clock's start
    length: int  # in steps


def engine_for(session: Session, model_dirs: list[Path] | None = None) -> Engine:
    settings = session.settings
    missing = [k for k in ("models", "preset_toml", "clock", "bpm", "seed") if k not in settings]
    if missing:
        raise MidiFileError(f"the session's glsr-live settings lack {', '.join(missing)}: "
                            "it cannot be replayed")
    dirs = model_dirs or [Path(d) for d in settings["models"]]
    models = [Model(directory) for directory in dirs]
    axes = set().union(*(m.info.axes for m in models))
    preset = parse_preset(tomllib.loads(settings["preset_toml"]), axes)
    grid = models[0].info.grid
    clock = (MidiClock(grid.steps_per_beat) if settings["clock"] == "midi"
             else InternalClock(float(settings["bpm"]), grid.steps_per_beat))
    return Engine(models[0], preset, clock, np.random.default_rng(settings["seed"]),
                  models=models)


def replay(session: Session, engine: Engine) -> list[tuple[float, mido.Message]]:
    """(seconds, message) the engine sends for the session's input, as the daemon would, at
    the engine times the daemon recorded them at.

    Where the live loop stalled (the file says when), the replay ticks at the stall's start,
    then only at the messages that arrived meanwhile and at the stall's end, as the loop did;
    steps the loop reached too late to sound are silent here too.
    """
    engine.forced_silent = set(session.silent)
    out: list[tuple[float, mido.Message]] = []
    out += [(0.0, m) for m in engine.start_messages()]
    ends = sorted({at for stall in session.stalls for at in stall})  # the loop ticked there
    now = 0.0

    def tick_until(seconds: float) -> float:
        """The loop's free ticks up to (not at) ``seconds``; returns the last tick's time."""
        at = now
        while True:
            following = min([at + TICK_SECONDS] + [e for e in ends if at < e < seconds])
            if following >= seconds:
                return at
            at = following
            if stall_of(session.stalls, at) is None:
                out.extend((at, m) for m in engine.tick(at))

    for seconds, message in session.incoming:
        now = tick_until(seconds)
        now = seconds
        out.extend((now, m) for m in engine.tick(now) + engine.handle(message, now))
    last = session.ended if session.ended is not None else max(
        [s for s, _ in session.outgoing] + [now]) + TAIL_SECONDS
    now = max(tick_until(last), last)  # the live engine's last tick, then its stop
    out.extend((now, m) for m in engine.tick(now))
    return out + [(now, m) for m in engine.stop()]


def stall_of(stalls: list[tuple[float, float]], now: float) -> tuple[float, float] | None:
    """The stall of the live loop that ``now`` falls in, its ends left out (the loop ticked
    at its start and again at its end)."""
    return next(((since, until) for since, until in stalls if since < now < until), None)


def grid_notes(messages: list[tuple[float, mido.Message]], origin: float, step: float
               ) -> list[GridNote]:
    """Notes of a timed message list on the grid (onset and length in steps from ``origin``)."""
    sounding: dict[tuple[int, int], float] = {}
    notes = []
    for seconds, message in messages:
        if message.type not in ("note_on", "note_off"):
            continue
        key = (message.channel, message.note)
        if message.type == "note_on" and message.velocity > 0:
            sounding[key] = seconds
        elif key in sounding:
            start = sounding.pop(key)
            onset = round((start - origin) / step)
            notes.append(GridNote(message.note, onset, max(1, round((seconds - origin) / step)
                                                           - onset)))
    return sorted(notes, key=lambda n: (n.step, n.pitch))


def clock_origin(session: Session) -> float:
    """When the internal clock started: the first note played (its grid is counted from it)."""
    for seconds, message in session.incoming:
        if message.type == "note_on" and message.velocity > 0:
            return seconds
    return 0.0


def compare(recorded: list[GridNote], replayed: list[GridNote]) -> dict:
    """Counts and the notes found on one side only (pitch, step and length must all agree)."""
    a, b = set(recorded), set(replayed)
    return {"recorded": len(recorded), "replayed": len(replayed),
            "only_recorded": len(a - b), "only_replayed": len(b - a),
            "identical": recorded == replayed}


def write_messages(path: Path, messages: list[tuple[float, mido.Message]],
                   bpm: float = 120.0) -> None:
    """A one-track MIDI file of channel messages at their times, at ``bpm``."""
    tempo = TempoMap(tempo_of(bpm))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo.tempos[0], time=0)])
    last = 0
    for seconds, message in sorted(messages, key=lambda item: item[0]):
        if message.is_meta or message.bin()[0] >= 0xF0:
            continue
        tick = tempo.tick(seconds)
        track.append(message.copy(time=tick - last))
        last = tick
    midi = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    midi.save(str(path))


def replay_file(path: Path, out: Path, model_dirs: list[Path] | None = None) -> dict:
    """Replay a session file into ``out``; returns the note comparison with the recording."""
    session = read_session(path)
    engine = engine_for(session, model_dirs)
    replayed = replay(session, engine)
    write_messages(out, replayed, float(session.settings.get("bpm") or 120.0))
    step = engine.clock.step_seconds if isinstance(engine.clock, InternalClock) else None
    if step is None:  # MIDI clock: compare by 16ths at the recorded tempo estimate
        step = 60.0 / float(session.settings.get("bpm", 120.0)) / engine.info.grid.steps_per_beat
    origin = clock_origin(session)
    recorded, again = grid_notes(session.outgoing, origin, step), grid_notes(replayed, origin, step)
    if session.ended is not None:
        return compare(recorded, again)
    # Killed before its end mark: the file holds what was written up to its last second.
    # Compare the notes that had ended by then; the replay goes on where the file stops.
    cut = max([s for s, _ in session.incoming + session.outgoing] + [0.0])
    last_step = math.floor((cut - origin) / step)
    result = compare([n for n in recorded if n.step + n.length <= last_step],
                     [n for n in again if n.step + n.length <= last_step])
    return {**result, "cut_short_at": round(cut, 3)}
