"""Melodies from music21's training collections or a folder of the user's MIDI/MusicXML/ABC files.

A melody is a ``Line``: one int16 code per 16th step, the MIDI pitch at an onset, ``LINE_HOLD``
while the note goes on, ``LINE_REST`` for silence. Lines are transposable by adding to the codes
that are >= 0. Each melody also keeps the steps its bar lines fall on (its own metre), where
training windows start, as the live instrument captures phrases from bar lines.

Only these music21 collections may be trained or tuned on: ``bach`` (the chorales' sopranos),
``essen`` (Essen folksongs), ``nottingham`` (the Nottingham dataset) and ``oneill`` (O'Neill's
Music of Ireland). The rest of music21's corpus is reserved for evaluation.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from glsr_live.midifile import MidiFileError, beat_notes_to_grid, read_metre, read_notes
from glsr_live.tokens import (
    HOLD,
    METRE_BAR_STEPS,
    REST,
    Grid,
    Note,
    Vocabulary,
    bar_steps,
    notes_to_tokens,
)

LINE_REST = -1
LINE_HOLD = -2
MIDI_SUFFIXES = {".mid", ".midi"}
SCORE_SUFFIXES = {".xml", ".musicxml", ".mxl", ".krn", ".abc"}
SOPRANO_NAMES = ("soprano", "sopran", "s.", "s")
COLLECTIONS = {"essen": "essenFolksong", "nottingham": "nottingham-dataset",
               "oneill": "oneills1850"}  # our name -> music21's composer directory
NAMED_CORPORA = ("bach", *COLLECTIONS)
EVALUATION_PREFIX = "music21:"  # music21:ryansMammoth etc.: reserved for evaluation


class CorpusError(ValueError):
    """A corpus that gives no melody; the message is one line for the user."""


@dataclass
class Melody:
    name: str
    line: np.ndarray  # (steps,) int16 codes
    bars: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # bar-line steps
    metre: str = ""  # the time signature of most of its bars ('6/8'); '' when it has none


@dataclass
class CorpusResult:
    melodies: list[Melody] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # piece -> reason

    def add(self, melody: Melody, grid: Grid) -> None:
        """Keep a melody long enough for one window; note why another is skipped."""
        if len(melody.line) < grid.seq_len:
            self.skipped[melody.name] = f"shorter than {grid.seq_len} steps"
        else:
            self.melodies.append(melody)


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
        if element.duration.isGrace or "Harmony" in element.classes:  # ABC chord symbols
            continue
        pitch = max(p.midi for p in element.pitches)
        onset = round((float(element.offset) + pickup) * grid.steps_per_beat)
        length = round(float(element.duration.quarterLength) * grid.steps_per_beat)
        if length >= 1:
            notes.append(Note(onset, length, pitch))
    return notes


def bar_lines(part, grid: Grid) -> np.ndarray:
    """(bars,) int32 steps of a part's bar lines, in the shifted time of ``part_to_notes``.

    A pickup measure is padded to a whole bar, so the first full bar starts one bar in.
    """
    measures = part.getElementsByClass("Measure")
    if not len(measures):
        return np.zeros(0, np.int32)
    pickup = float(measures[0].paddingLeft)
    starts = [0] + [round((float(m.offset) + pickup) * grid.steps_per_beat)
                    for m in measures[1:]]
    return np.unique(np.array(starts, dtype=np.int32))


def metre_of(part) -> str:
    """The time signature in force over most of a part's measures ('3/4'), '' if it has none.

    music21 gives some ABC pickups a stray signature of their own ('1/16'), hence the vote.
    """
    counts: dict[str, int] = {}
    current = ""
    for measure in part.getElementsByClass("Measure"):
        if measure.timeSignature is not None:
            current = measure.timeSignature.ratioString
        if current:
            counts[current] = counts.get(current, 0) + 1
    return max(counts, key=counts.get) if counts else ""


def melody_part(score) -> object:
    """The soprano part, else the part with the highest mean pitch, else the score itself.

    Three chorales in music21 are Humdrum files whose parts are named spine_N only.
    """
    soprano = find_soprano(score)
    if soprano is not None:
        return soprano
    parts = list(score.parts) or [score]

    def mean_pitch(part) -> float:
        pitches = [max(p.midi for p in n.pitches) for n in part.flatten().notes
                   if "Harmony" not in n.classes]
        return float(np.mean(pitches)) if pitches else -1.0

    return max(parts, key=mean_pitch)


def score_melody(name: str, score, grid: Grid) -> Melody:
    return part_melody(name, melody_part(score), grid)


def part_melody(name: str, part, grid: Grid) -> Melody:
    return Melody(name, notes_to_line(part_to_notes(part, grid)), bar_lines(part, grid),
                  metre_of(part))


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
        result.add(score_melody(name, corpus.parse(name), grid), grid)
    return result


def parse_collection_file(path: str, grid: Grid) -> CorpusResult:
    """Every tune of one ABC file of a music21 collection (runs in a worker process)."""
    from music21 import converter

    result = CorpusResult()
    stem = Path(path).name
    try:
        parsed = converter.parse(path)
    except Exception as error:  # music21 raises many unrelated types for bad files
        result.skipped[stem] = f"not readable ({type(error).__name__})"
        return result
    scores = list(parsed.scores) if hasattr(parsed, "scores") else [parsed]
    for index, score in enumerate(scores):
        number = getattr(score.metadata, "number", None) or index + 1
        name = f"{stem}#{number} {getattr(score.metadata, 'title', None) or ''}".strip()
        try:
            result.add(score_melody(name, score, grid), grid)
        except Exception as error:  # one odd tune must not cost the whole file
            result.skipped[name] = f"not readable ({type(error).__name__})"
    return result


def load_collection(collection: str, grid: Grid, progress: bool = True) -> CorpusResult:
    """Every tune of music21's ``essen``, ``nottingham`` or ``oneill`` collection (or, for
    evaluation only, ``music21:NAME``, any other directory of music21's corpus), parsed by one
    worker process per core (Essen's 8,500 tunes take minutes)."""
    from music21 import corpus

    directory = COLLECTIONS.get(collection) or collection.removeprefix(EVALUATION_PREFIX)
    paths = sorted(str(p) for p in corpus.getComposer(directory))
    if not paths:
        raise CorpusError(f"music21 has no corpus directory {directory!r}")
    result = CorpusResult()
    workers = max(1, min(len(paths), os.cpu_count() or 1))
    with ProcessPoolExecutor(workers) as pool:
        parts = pool.map(parse_collection_file, paths, [grid] * len(paths))
        for part in tqdm(parts, total=len(paths), desc=f"parsing {collection}", unit="file",
                         disable=not progress):
            result.melodies += part.melodies
            result.skipped.update(part.skipped)
    return result


# ---------------------------------------------------------------- user folders


def corpus_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CorpusError(f"{path}: no such file or folder")
    suffixes = MIDI_SUFFIXES | SCORE_SUFFIXES
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def usable_files(path: Path) -> list[Path]:
    """The folder's MIDI and score files; none is an error."""
    files = corpus_files(path)
    if not files:
        raise CorpusError(f"{path}: no MIDI or MusicXML files found")
    return files


def score_file_melody(path: Path, grid: Grid, track: str | None) -> Melody:
    """The named part, else the soprano, else the part with the highest mean pitch."""
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
        return part_melody(str(path), named[0], grid)
    return score_melody(str(path), score, grid)


def file_melody(path: Path, grid: Grid, track: str | None) -> Melody:
    """A MIDI file's bars start at its first beat, one every bar of its first time signature
    (the grid's when it has none or one we do not play)."""
    if path.suffix.lower() in MIDI_SUFFIXES:
        line = notes_to_line(beat_notes_to_grid(read_notes(path, track), grid))
        metre = read_metre(path) or ""
        bars = (np.arange(0, len(line), bar_steps(metre), dtype=np.int32)
                if metre in METRE_BAR_STEPS else np.zeros(0, np.int32))
        return Melody(str(path), line, bars, metre)
    return score_file_melody(path, grid, track)


def load_folder(
    path: Path, grid: Grid, track: str | None = None, progress: bool = True
) -> CorpusResult:
    """Melodies of every MIDI/score file under ``path``; unreadable files are skipped."""
    files = usable_files(path)
    result = CorpusResult()
    quiet = not progress or len(files) < 20  # a bar for a handful of files is noise
    for file in tqdm(files, desc="reading files", unit="file", disable=quiet):
        try:
            result.add(file_melody(file, grid, track), grid)
        except (MidiFileError, CorpusError) as error:
            result.skipped[str(file)] = str(error).removeprefix(f"{file}: ")
    if not result.melodies:
        reasons = "; ".join(f"{Path(k).name}: {v}" for k, v in list(result.skipped.items())[:3])
        raise CorpusError(f"{path}: no usable melody ({reasons})")
    return result


def corpus_fingerprint(corpus: str, track: str | None) -> list[str]:
    """What identifies a corpus's content for the cache key."""
    if corpus in NAMED_CORPORA or corpus.startswith(EVALUATION_PREFIX):
        return [corpus, importlib.metadata.version("music21")]
    files = corpus_files(Path(corpus))
    return [str(track)] + [f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]


def line_to_notes(line: np.ndarray) -> list[Note]:
    """Grid notes of a line (the inverse of ``notes_to_line``)."""
    notes: list[Note] = []
    for step, code in enumerate(line.tolist()):
        if code >= 0:
            notes.append(Note(step, 1, int(code)))
        elif code == LINE_HOLD and notes and notes[-1].end == step:
            notes[-1] = Note(notes[-1].onset, notes[-1].length + 1, notes[-1].pitch)
    return notes


def pitches_of(lines: Iterable[np.ndarray]) -> np.ndarray:
    return np.concatenate([line[line >= 0] for line in lines])
