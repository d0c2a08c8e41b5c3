"""MIDI files in and out through mido, in beats (quarter notes) rather than seconds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mido

from .errors import MidiFileError
from .tokens import Grid, Note

DRUM_CHANNEL = 9


@dataclass(frozen=True)
class BeatNote:
    """A note in quarter-note beats from the start of the file."""

    start: float
    end: float
    pitch: int
    velocity: int = 100


def open_midi(path: str | Path) -> mido.MidiFile:
    try:
        return mido.MidiFile(str(path))
    except FileNotFoundError:
        raise MidiFileError(f"{path}: no such file") from None
    except EOFError:
        raise MidiFileError(f"{path}: not a readable MIDI file (it ends in the middle of a "
                            "track: cut short?)") from None
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        reason = str(error).strip() or type(error).__name__
        raise MidiFileError(f"{path}: not a readable MIDI file ({reason})") from None


def track_names(midi: mido.MidiFile) -> list[str]:
    names = []
    for index, track in enumerate(midi.tracks):
        name = next((m.name for m in track if m.type == "track_name"), "") or track.name
        names.append(name or f"track {index}")
    return names


def _track_notes(track: mido.MidiTrack, ticks_per_beat: int) -> list[BeatNote]:
    """Notes of one track; velocity-0 note-ons end notes; unmatched offs are ignored."""
    tick = 0
    open_notes: dict[tuple[int, int], tuple[int, int]] = {}
    notes = []
    for message in track:
        tick += message.time
        if message.type not in ("note_on", "note_off") or message.channel == DRUM_CHANNEL:
            continue
        key = (message.channel, message.note)
        if key in open_notes:
            start, velocity = open_notes.pop(key)
            notes.append(BeatNote(start / ticks_per_beat, tick / ticks_per_beat, key[1], velocity))
        if message.type == "note_on" and message.velocity > 0:
            open_notes[key] = (tick, message.velocity)
    for (_, pitch), (start, velocity) in open_notes.items():
        notes.append(BeatNote(start / ticks_per_beat, tick / ticks_per_beat, pitch, velocity))
    return notes


def read_notes(path: str | Path, track: str | None = None) -> list[BeatNote]:
    """Notes of every track (or of the track whose name contains ``track``), sorted by start."""
    midi = open_midi(path)
    if midi.type == 2:
        raise MidiFileError(f"{path}: MIDI type 2 (independent sequences) is not supported")
    names = track_names(midi)
    chosen = range(len(midi.tracks))
    if track is not None:
        chosen = [i for i, name in enumerate(names) if track.lower() in name.lower()]
        if not chosen:
            raise MidiFileError(f"{path}: no track named like {track!r} (tracks: {names})")
    notes = []
    for index in chosen:
        notes.extend(_track_notes(midi.tracks[index], midi.ticks_per_beat))
    return sorted(notes, key=lambda n: (n.start, -n.pitch))


def beat_notes_to_grid(notes: list[BeatNote], grid: Grid, offset_beats: float = 0.0) -> list[Note]:
    """Quantise beat notes to grid notes, starting ``offset_beats`` into the file."""
    grid_notes = []
    for note in notes:
        onset = round((note.start - offset_beats) * grid.steps_per_beat)
        end = round((note.end - offset_beats) * grid.steps_per_beat)
        if onset >= 0:
            grid_notes.append(Note(onset, max(1, end - onset), note.pitch))
    return grid_notes


def read_metre(path: str | Path) -> str | None:
    """The time signature of a MIDI file's first time-signature event ('6/8'), None without
    one."""
    for track in open_midi(path).tracks:
        for message in track:
            if message.type == "time_signature":
                return f"{message.numerator}/{message.denominator}"
    return None


def signature_event(metre: str | None, grid: Grid | None = None) -> mido.MetaMessage:
    """The time-signature event of ``metre``, else quarter-note bars of ``grid``."""
    numerator, denominator = (int(x) for x in metre.split("/")) if metre else (
        grid.beats_per_bar, 4)
    return mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator,
                            time=0)


def write_notes(
    path: str | Path,
    notes: list[Note],
    grid: Grid,
    bpm: float = 120.0,
    channel: int = 0,
    velocity: int = 100,
    ticks_per_beat: int = 480,
    text: str | None = None,
    metre: str | None = None,
) -> None:
    """One-track MIDI file of grid notes at ``bpm`` (``text``: a text event at the start) in
    ``metre`` (default: quarter-note bars of the grid)."""
    ticks_per_step = ticks_per_beat // grid.steps_per_beat
    events = []
    for note in notes:
        events.append((note.onset * ticks_per_step, 1, note.pitch, velocity))
        events.append((note.end * ticks_per_step, 0, note.pitch, 0))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(signature_event(metre, grid))
    if text is not None:
        track.append(mido.MetaMessage("text", text=text, time=0))
    now = 0
    for tick, is_on, pitch, vel in sorted(events):
        kind = "note_on" if is_on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=vel, channel=channel, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    midi.save(str(path))


def write_played(path: str | Path, notes: list[tuple[float, float, int, int]], grid: Grid,
                 bpm: float = 120.0, ticks_per_beat: int = 960, channel: int = 0,
                 metre: str | None = None) -> None:
    """One-track MIDI file of played notes: (start, end in grid steps, off the grid as they
    were played, pitch, velocity) in ``metre``. 960 ticks a beat: half a millisecond at
    120 BPM."""
    ticks_per_step = ticks_per_beat / grid.steps_per_beat
    events = []
    for start, end, pitch, velocity in notes:
        on = max(0, round(start * ticks_per_step))
        events.append((on, 1, pitch, velocity))
        events.append((max(on + 1, round(end * ticks_per_step)), 0, pitch, 0))
    track = mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
        signature_event(metre, grid)])
    now = 0
    for tick, is_on, pitch, velocity in sorted(events):
        kind = "note_on" if is_on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=velocity, channel=channel,
                                  time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    midi.save(str(path))
