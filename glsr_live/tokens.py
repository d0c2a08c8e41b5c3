"""Melody token codec on the paper's sixteenth-note grid.

A phrase is ``L`` steps of a 16th-note grid (default 32 = two 4/4 bars). Each step holds one token:
``rest``, hold (``__``: the sounding note goes on) or a MIDI pitch (a new note starts). Every
conversion here is pure and stands beside its inverse:

- notes (onset step, length, pitch)  <->  tokens
- tokens  ->  timed note events at a tempo;  timed note events  ->  tokens (quantised)

Tokens are canonical: a hold never follows a rest and never starts a phrase, so that
``notes_to_tokens(tokens_to_notes(t)) == t`` for every canonical ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REST = 0
HOLD = 1
REST_NAME = "rest"
HOLD_NAME = "__"
BLACK_PITCH_CLASSES = (1, 3, 6, 8, 10)


METRE_BAR_STEPS = {"4/4": 16, "2/2": 16, "2/4": 8, "3/4": 12, "6/8": 12}  # 16ths per bar


METRE_BEATS = {"4/4": (4, 4), "2/2": (8, 2), "2/4": (4, 2), "3/4": (4, 3), "6/8": (6, 2)}
# (16ths per felt beat, beats per bar): 6/8 is two dotted quarters, 2/2 two halves


def bar_steps(metre: str) -> int:
    """16th steps in one bar of ``metre`` ('6/8' -> 12); ValueError for one we do not play."""
    if metre not in METRE_BAR_STEPS:
        raise ValueError(f"metre {metre!r} is not one of {', '.join(METRE_BAR_STEPS)}")
    return METRE_BAR_STEPS[metre]


def declared_metres(model_json: dict) -> list[str]:
    """The time signatures a model.json says its model plays (``metres``); a model exported
    before that field plays quarter-note bars of ``beats_per_bar``."""
    return list(model_json.get("metres") or [f"{model_json['beats_per_bar']}/4"])


def plays(metres: list[str], metre: str) -> bool:
    """A model trained on ``metres`` plays ``metre``: its own, and on a 4/4 grid 2/2 (the same
    bar) and 2/4 (two of its bars to one)."""
    return metre in metres or ("4/4" in metres and metre in ("2/2", "2/4"))


@dataclass(frozen=True)
class Grid:
    """The time grid: steps per beat, beats per bar, steps per phrase."""

    steps_per_beat: int = 4
    beats_per_bar: int = 4
    seq_len: int = 32

    def __post_init__(self) -> None:
        if min(self.steps_per_beat, self.beats_per_bar, self.seq_len) < 1:
            raise ValueError(f"grid sizes must be positive: {self}")

    @property
    def steps_per_bar(self) -> int:
        return self.steps_per_beat * self.beats_per_bar

    def step_seconds(self, bpm: float) -> float:
        """Duration of one grid step at ``bpm`` quarter notes per minute."""
        if bpm <= 0:
            raise ValueError(f"tempo must be positive, got {bpm}")
        return 60.0 / bpm / self.steps_per_beat


@dataclass(frozen=True)
class Vocabulary:
    """rest, hold, then every MIDI pitch from ``low`` to ``high`` inclusive."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high <= 127:
            raise ValueError(f"pitch range must satisfy 0 <= low <= high <= 127: {self}")

    @classmethod
    def from_names(cls, names: list[str]) -> Vocabulary:
        """Rebuild a vocabulary from its token names (the order ``names()`` gives)."""
        if len(names) < 3 or names[0] != REST_NAME or names[1] != HOLD_NAME:
            raise ValueError("vocabulary must start with 'rest', '__' and list at least one pitch")
        pitches = [int(n) for n in names[2:]]
        vocab = cls(pitches[0], pitches[-1])
        if vocab.names() != list(names):
            raise ValueError("vocabulary pitches must be consecutive MIDI numbers")
        return vocab

    @property
    def size(self) -> int:
        return self.high - self.low + 3

    def names(self) -> list[str]:
        return [REST_NAME, HOLD_NAME] + [str(p) for p in range(self.low, self.high + 1)]

    def token(self, pitch: int) -> int:
        if not self.low <= pitch <= self.high:
            raise ValueError(f"pitch {pitch} outside the vocabulary range {self.low}..{self.high}")
        return pitch - self.low + 2

    def pitch(self, token: int) -> int:
        if not 2 <= token < self.size:
            raise ValueError(f"token {token} is not a pitch token")
        return int(token) - 2 + self.low

    def pitch_table(self) -> np.ndarray:
        """(K,) MIDI pitch per token; -1 for rest and hold."""
        return np.array([-1, -1] + list(range(self.low, self.high + 1)), dtype=np.int64)


@dataclass(frozen=True)
class Note:
    """One note on the grid: ``onset`` step, ``length`` in steps, MIDI ``pitch``."""

    onset: int
    length: int
    pitch: int

    def __post_init__(self) -> None:
        if self.onset < 0 or self.length < 1 or not 0 <= self.pitch <= 127:
            raise ValueError(f"invalid note {self}")

    @property
    def end(self) -> int:
        return self.onset + self.length


@dataclass(frozen=True)
class NoteEvent:
    """A timed note-on (``on=True``) or note-off, ``time`` in seconds."""

    time: float
    pitch: int
    on: bool
    velocity: int = 100


# ---------------------------------------------------------------- notes <-> tokens


def skyline(notes: list[Note], seq_len: int) -> list[int | None]:
    """Index of the highest sounding note at each step (``None`` = silence)."""
    top: list[int | None] = [None] * seq_len
    for index, note in enumerate(notes):
        for step in range(note.onset, min(note.end, seq_len)):
            current = top[step]
            if current is None or note.pitch > notes[current].pitch or (
                note.pitch == notes[current].pitch and note.onset > notes[current].onset
            ):
                top[step] = index
    return top


def notes_to_tokens(notes: list[Note], vocab: Vocabulary, seq_len: int) -> np.ndarray:
    """(seq_len,) int64 tokens; overlapping notes reduce to the highest sounding one.

    A lower note revealed when a higher one ends is re-articulated, so the melody never
    jumps without an onset. Notes past ``seq_len`` are cut.
    """
    tokens = np.full(seq_len, REST, dtype=np.int64)
    top = skyline(notes, seq_len)
    for step, index in enumerate(top):
        if index is None:
            continue
        continues = step > 0 and top[step - 1] == index and notes[index].onset != step
        tokens[step] = HOLD if continues else vocab.token(notes[index].pitch)
    return tokens


def tokens_to_notes(tokens: np.ndarray, vocab: Vocabulary) -> list[Note]:
    """Notes of a token sequence; holds after a rest or at the start are silence."""
    notes: list[Note] = []
    onset, pitch = -1, -1
    for step, token in enumerate(np.asarray(tokens).tolist()):
        if token == HOLD and onset >= 0:
            continue
        if onset >= 0:
            notes.append(Note(onset, step - onset, pitch))
            onset = -1
        if token >= 2:
            onset, pitch = step, vocab.pitch(token)
    if onset >= 0:
        notes.append(Note(onset, len(tokens) - onset, pitch))
    return notes


def canonical(tokens: np.ndarray) -> np.ndarray:
    """Replace holds that follow a rest (or open the phrase) by rests."""
    out = np.array(tokens, dtype=np.int64, copy=True)
    sounding = False
    for step, token in enumerate(out.tolist()):
        if token == HOLD and not sounding:
            out[step] = REST
        sounding = token != REST and (token != HOLD or sounding)
    return out


def is_canonical(tokens: np.ndarray) -> bool:
    return bool(np.array_equal(canonical(tokens), tokens))


# ---------------------------------------------------------------- octave folding


def octave_shift_to_fit(pitches: list[int], low: int, high: int) -> int:
    """Whole octaves to add to every pitch so that the most notes fit in [low, high].

    Ties go to the smallest shift (a phrase that fits is left alone), then to the one that
    centres the phrase best.
    """
    if not pitches:
        return 0
    centre = (low + high) / 2
    mean = sum(pitches) / len(pitches)

    def score(octaves: int) -> tuple[int, int, float]:
        shifted = [p + 12 * octaves for p in pitches]
        outside = sum(not low <= p <= high for p in shifted)
        return outside, abs(octaves), abs(mean + 12 * octaves - centre)

    return min(range(-10, 11), key=score)


def fold_pitch(pitch: int, low: int, high: int) -> int:
    """Move ``pitch`` by octaves into [low, high] (nearest edge if the range is < 1 octave)."""
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return max(pitch, low)


def fit_notes(notes: list[Note], vocab: Vocabulary) -> tuple[list[Note], int]:
    """Shift the phrase by whole octaves into the vocabulary, folding the remaining outliers.

    Returns the fitted notes and the octave shift applied; add ``-12 * shift`` semitones to
    decoded pitches to put the output back in the player's register.
    """
    shift = octave_shift_to_fit([n.pitch for n in notes], vocab.low, vocab.high)
    fitted = [
        Note(n.onset, n.length, fold_pitch(n.pitch + 12 * shift, vocab.low, vocab.high))
        for n in notes
    ]
    return fitted, shift


def unfold_notes(notes: list[Note], shift: int) -> list[Note]:
    """Undo the whole-octave shift of ``fit_notes`` (clamped to the MIDI range by octaves)."""
    return [Note(n.onset, n.length, fold_pitch(n.pitch - 12 * shift, 0, 127)) for n in notes]


# ---------------------------------------------------------------- tokens <-> timed events


def notes_to_events(
    notes: list[Note], grid: Grid, bpm: float, start: float = 0.0, velocity: int = 100
) -> list[NoteEvent]:
    """Timed note-on/off events; offs sort before ons at the same instant."""
    step = grid.step_seconds(bpm)
    events = []
    for note in notes:
        events.append(NoteEvent(start + note.onset * step, note.pitch, True, velocity))
        events.append(NoteEvent(start + note.end * step, note.pitch, False, 0))
    return sorted(events, key=lambda e: (e.time, e.on, e.pitch))


def tokens_to_events(
    tokens: np.ndarray,
    vocab: Vocabulary,
    grid: Grid,
    bpm: float,
    start: float = 0.0,
    velocity: int = 100,
) -> list[NoteEvent]:
    return notes_to_events(tokens_to_notes(tokens, vocab), grid, bpm, start, velocity)


def events_to_notes(
    events: list[NoteEvent], grid: Grid, bpm: float, start: float = 0.0
) -> list[Note]:
    """Pair note-ons with note-offs and quantise them to the grid.

    A note-on with velocity 0 is a note-off. An off without an on is ignored; a second on of
    a sounding pitch ends the first note there, and the late off of that first note (one that
    quantises no later than the re-strike) is then ignored. Notes still sounding at the end
    last until the phrase end. Onsets before ``start`` are dropped; every note lasts at least
    one step.
    """
    step = grid.step_seconds(bpm)
    open_onsets: dict[int, int] = {}
    restruck_at: dict[int, int] = {}  # pitch -> step of a re-strike still owed an off
    notes: list[Note] = []

    def close(pitch: int, end_step: int) -> None:
        onset = open_onsets.pop(pitch)
        notes.append(Note(onset, max(1, end_step - onset), pitch))

    for event in sorted(events, key=lambda e: (e.time, e.on and e.velocity > 0)):
        at = int(round((event.time - start) / step))
        if event.on and event.velocity > 0:
            if event.pitch in open_onsets:
                close(event.pitch, at)
                restruck_at[event.pitch] = at
            if at >= 0:
                open_onsets[event.pitch] = at
        elif restruck_at.pop(event.pitch, None) is not None and at <= open_onsets.get(
                event.pitch, at):
            continue
        elif event.pitch in open_onsets:
            close(event.pitch, at)
    for pitch in list(open_onsets):
        close(pitch, max(grid.seq_len, open_onsets[pitch] + 1))
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


def events_to_tokens(
    events: list[NoteEvent], vocab: Vocabulary, grid: Grid, bpm: float, start: float = 0.0
) -> tuple[np.ndarray, int]:
    """Quantised, monophonic, octave-fitted tokens of timed events, and the octave shift."""
    notes = [n for n in events_to_notes(events, grid, bpm, start) if n.onset < grid.seq_len]
    fitted, shift = fit_notes(notes, vocab)
    return notes_to_tokens(fitted, vocab, grid.seq_len), shift
