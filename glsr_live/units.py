"""Attribute values in their units for people: note counts, note names, semitones."""

from __future__ import annotations

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: float) -> str:
    """MIDI pitch -> 'G4' (C4 = 60), rounded to the nearest semitone."""
    if not np.isfinite(pitch):
        return "-"
    number = int(round(pitch))
    return f"{NOTE_NAMES[number % 12]}{number // 12 - 1}"


def parse_note_name(text: str) -> int:
    """'C4' -> 60, 'F#5' -> 78, 'Bb3' -> 58; ValueError for anything else."""
    text = text.strip()
    letter, rest = text[:1].upper(), text[1:]
    if letter not in "CDEFGAB" or not letter:
        raise ValueError(f"not a note name: {text!r}")
    pitch_class = NOTE_NAMES.index(letter)
    if rest[:1] in ("#", "b"):
        pitch_class += 1 if rest[0] == "#" else -1
        rest = rest[1:]
    try:
        octave = int(rest)
    except ValueError:
        raise ValueError(f"not a note name: {text!r}") from None
    return (octave + 1) * 12 + pitch_class


def format_value(name: str, value: float) -> str:
    """An attribute value in its unit: notes as a count, register as a note name, range in
    semitones."""
    if not np.isfinite(value):
        return "-"
    if name == "register":
        return note_name(value)
    if name == "notes":
        return f"{value:.0f}"
    if name == "range":
        return f"{value:.0f} st"  # semitones from the lowest note to the highest
    return f"{value:.2f}"


PITCH_VALUED = {"register", "highest", "lowest"}  # attributes measured in MIDI pitch
