"""Incoming notes -> a quantised phrase of L grid steps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .groove import Groove
from .tokens import Note, Vocabulary, fit_notes, notes_to_tokens


@dataclass
class HeardNote:
    pitch: int
    velocity: int
    start: float  # grid position (steps, float)
    end: float | None = None  # None while held


@dataclass(frozen=True)
class Phrase:
    tokens: np.ndarray  # (L,) canonical tokens
    octave_shift: int  # octaves added to fit the vocabulary; output is shifted back
    velocity: int  # mean velocity of the notes played
    groove: Groove | None = None  # each note's velocity and offset from the grid


@dataclass
class Capture:
    """Remembers the notes of the last few phrases, by grid position."""

    vocab: Vocabulary
    seq_len: int
    notes: list[HeardNote] = field(default_factory=list)
    held: dict[int, HeardNote] = field(default_factory=dict)

    def note_on(self, pitch: int, velocity: int, position: float) -> None:
        if velocity == 0:
            self.note_off(pitch, position)
            return
        self.note_off(pitch, position)  # a doubled note-on ends the first note
        note = HeardNote(pitch, velocity, position)
        self.notes.append(note)
        self.held[pitch] = note

    def note_off(self, pitch: int, position: float) -> None:
        note = self.held.pop(pitch, None)
        if note is not None:
            note.end = max(position, note.start)

    def release_all(self, position: float) -> None:
        for pitch in list(self.held):
            self.note_off(pitch, position)

    def forget_before(self, position: float) -> None:
        self.notes = [n for n in self.notes if n.end is None or n.end >= position]

    def take(self, start: float) -> Phrase | None:
        """The phrase of the L steps from grid position ``start``; None if nothing was played.

        Onsets round to the nearest step, so a note played a little early for the phrase's
        first step belongs to it.
        """
        grid_notes, velocities, played = [], [], []
        for heard in sorted(self.notes, key=lambda n: (n.start, -n.pitch)):
            onset = round(heard.start - start)
            if not 0 <= onset < self.seq_len:
                continue
            end = self.seq_len if heard.end is None else round(heard.end - start)
            grid_notes.append(Note(onset, max(1, min(end, self.seq_len) - onset), heard.pitch))
            velocities.append(heard.velocity)
            played.append((onset, heard.velocity, heard.start - start - onset))
        if not grid_notes:
            return None
        fitted, shift = fit_notes(grid_notes, self.vocab)
        tokens = notes_to_tokens(fitted, self.vocab, self.seq_len)
        return Phrase(tokens, shift, int(round(float(np.mean(velocities)))),
                      Groove.of_notes(self.seq_len, top_voice(played)))


def top_voice(played: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """One (step, velocity, offset) per step: the first note struck there (a chord's notes
    share a step; the phrase keeps its top voice, whose feel is close enough)."""
    first: dict[int, tuple[int, int, float]] = {}
    for step, velocity, offset in played:
        first.setdefault(step, (step, velocity, offset))
    return list(first.values())
