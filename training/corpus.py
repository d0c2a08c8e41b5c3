"""Melodies from music21's Bach chorales or a folder of the user's MIDI/MusicXML files.

A melody is a ``Line``: one int16 code per 16th step, the MIDI pitch at an onset, ``LINE_HOLD``
while the note goes on, ``LINE_REST`` for silence. Lines are transposable by adding to the codes
that are >= 0.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from glsr_live.midifile import MidiFileError, beat_notes_to_grid, read_notes
from glsr_live.tokens import HOLD, REST, Grid, Note, Vocabulary, notes_to_tokens

LINE_REST = -1
LINE_HOLD = -2
MIDI_SUFFIXES = {".mid", ".midi"}
SCORE_SUFFIXES = {".xml", ".musicxml", ".mxl", ".krn", ".abc"}
SOPRANO_NAMES = ("soprano", "sopran", "s.", "s")


class CorpusError(ValueError):
    """A corpus that gives no melody; the message is one line for the user."""


@dataclass
class Melody:
    name: str
    line: np.ndarray  # (steps,) int16 codes


@dataclass
class CorpusResult:
    melodies: list[Melody] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # piece -> reason


def notes_to_line(notes: list[Note]) -> np.ndarray:
    """Skyline of grid notes as a line (the highest sounding note wins)."""
    if not notes:
        return np.zeros(0, dtype=np.int16)
    steps = max(n.end for n in notes)
    pitches = [n.pitch for n in notes]
    vocab = Vocabulary(min(pitches), max(pitches))
    tokens = notes_to_tokens(notes, vocab, steps)
    line = np.where(tokens == REST, LINE_REST, np.where(tokens == HOLD, LINE_HOLD, 0))
    return np.where(tokens >= 2, tokens - 2 + vocab.low, line).astype(np.int16)


# ---------------------------------------------------------------- music21 scores


def find_soprano(score) -> object | None:
    """The part whose id or name says soprano; None if no part does."""
    for part in score.parts:
        for label in (part.id, part.partName):
            if isinstance(label, str) and label.strip().lower() in SOPRANO_NAMES:
                return part
            if isinstance(label, str) and label.lower().startswith("sopran"):
                return part
    return None


def part_to_notes(part, grid: Grid) -> list[Note]:
    """Grid notes of a music21 part: ties merged, grace notes dropped, chords to their top."""
    measures = part.getElementsByClass("Measure")
    pickup = float(measures[0].paddingLeft) if len(measures) else 0.0
    notes = []
    for element in part.stripTies().flatten().notes:
        if element.duration.isGrace:
            continue
        pitch = max(p.midi for p in element.pitches)
        onset = round((float(element.offset) + pickup) * grid.steps_per_beat)
        length = round(float(element.duration.quarterLength) * grid.steps_per_beat)
        if length >= 1:
            notes.append(Note(onset, length, pitch))
    return notes


def bach_filenames() -> list[str]:
    """Unique chorale files in music21's Riemenschneider order (371 entries, 350 files)."""
    from music21.corpus import chorales

    seen: dict[str, None] = {}
    for name in chorales.Iterator(returnType="filename"):
        seen.setdefault(str(name))
    return list(seen)


def load_bach(grid: Grid, progress: bool = True) -> CorpusResult:
    from music21 import corpus

    result = CorpusResult()
    for name in tqdm(bach_filenames(), desc="parsing chorales", unit="piece", disable=not progress):
        score = corpus.parse(name)
        line = notes_to_line(melody_notes(score, grid))
        if len(line) < grid.seq_len:
            result.skipped[name] = f"shorter than {grid.seq_len} steps"
            continue
        result.melodies.append(Melody(name, line))
    return result


# ---------------------------------------------------------------- user folders


def corpus_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CorpusError(f"{path}: no such file or folder")
    suffixes = MIDI_SUFFIXES | SCORE_SUFFIXES
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def score_file_notes(path: Path, grid: Grid, track: str | None) -> list[Note]:
    """Notes of the named part, else the soprano, else the part with the highest mean pitch."""
    from music21 import converter

    try:
        score = converter.parse(str(path))
    except Exception as error:  # music21 raises many unrelated types for bad files
        raise CorpusError(f"not a readable score ({type(error).__name__})") from None
    parts = list(score.parts) or [score]
    if track is not None:
        named = [p for p in parts if track.lower() in str(p.partName or p.id).lower()]
        if not named:
            raise CorpusError(f"no part named like {track!r}")
        return part_to_notes(named[0], grid)
    return melody_notes(score, grid)


def melody_notes(score, grid: Grid) -> list[Note]:
    """Notes of the soprano part, else of the part with the highest mean pitch.

    Three chorales in music21 are Humdrum files whose parts are named spine_N only.
    """
    soprano = find_soprano(score)
    if soprano is not None:
        return part_to_notes(soprano, grid)
    parts = [part_to_notes(p, grid) for p in (list(score.parts) or [score])]
    return max(parts, key=lambda notes: np.mean([n.pitch for n in notes]) if notes else -1)


def file_notes(path: Path, grid: Grid, track: str | None) -> list[Note]:
    if path.suffix.lower() in MIDI_SUFFIXES:
        return beat_notes_to_grid(read_notes(path, track), grid)
    return score_file_notes(path, grid, track)


def load_folder(
    path: Path, grid: Grid, track: str | None = None, progress: bool = True
) -> CorpusResult:
    """Melodies of every MIDI/score file under ``path``; unreadable files are skipped."""
    files = corpus_files(path)
    if not files:
        raise CorpusError(f"{path}: no MIDI or MusicXML files found")
    result = CorpusResult()
    quiet = not progress or len(files) < 20  # a bar for a handful of files is noise
    for file in tqdm(files, desc="reading files", unit="file", disable=quiet):
        try:
            line = notes_to_line(file_notes(file, grid, track))
        except (MidiFileError, CorpusError) as error:
            result.skipped[str(file)] = str(error).removeprefix(f"{file}: ")
            continue
        if len(line) < grid.seq_len:
            result.skipped[str(file)] = f"shorter than {grid.seq_len} steps"
            continue
        result.melodies.append(Melody(str(file), line))
    if not result.melodies:
        reasons = "; ".join(f"{Path(k).name}: {v}" for k, v in list(result.skipped.items())[:3])
        raise CorpusError(f"{path}: no usable melody ({reasons})")
    return result


def corpus_fingerprint(corpus: str, track: str | None) -> list[str]:
    """What identifies a corpus's content for the cache key."""
    if corpus == "bach":
        return ["bach", importlib.metadata.version("music21")]
    files = corpus_files(Path(corpus))
    return [str(track)] + [f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]


def pitches_of(lines: Iterable[np.ndarray]) -> np.ndarray:
    return np.concatenate([line[line >= 0] for line in lines])
