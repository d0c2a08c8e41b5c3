"""Scheduled output with open-note tracking: every note-on sent is matched by a note-off.

A MIDI system can still drop a message: a JACK client that misses a cycle on a busy machine
loses what it sent in it (see README, "When things go wrong"). So that a lost note-off never
leaves a note sounding, the player says every note-off three times (again at each of the next
two grid steps, unless the pitch sounds again by then) and, at each loop boundary, sends a
note-off for every pitch it struck in the loop before that is not meant to sound now. A
note-off for a silent pitch is harmless; a pitch meant to sound is never sent one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mido
import numpy as np

from .tokens import HOLD, Vocabulary

ALL_NOTES_OFF = 123


@dataclass(frozen=True)
class Variation:
    """A decoded phrase ready to play: per step, the sounding pitch (-1 silent) and onsets."""

    tokens: np.ndarray  # (L,) canonical tokens
    sounding: np.ndarray  # (L,) MIDI pitch sounding at each step, -1 for silence
    onset: np.ndarray  # (L,) bool, a note starts here
    velocity: np.ndarray | None = None  # (L,) velocity of each onset (None: the player's)
    offset: np.ndarray | None = None  # (L,) steps off the grid each onset was played

    def with_feel(self, groove) -> Variation:
        """This variation with the player's velocities and timing (``groove.Groove``)."""
        velocity, offset = groove.feel(self.onset)
        return Variation(self.tokens, self.sounding, self.onset, velocity, offset)

    def lateness(self, step: int) -> float:
        """Steps after the grid the note starting at ``step`` comes (0: on the grid). Live,
        a note played early comes on the grid: the engine does not play ahead of it."""
        index = step % len(self.sounding)
        if self.offset is None or not self.onset[index]:
            return 0.0
        return max(0.0, float(self.offset[index]))

    @classmethod
    def from_tokens(cls, tokens: np.ndarray, vocab: Vocabulary, transpose: int = 0) -> Variation:
        """``transpose`` semitones are added to every pitch (undoing the capture's octave fit)."""
        table = vocab.pitch_table()
        sounding = np.full(len(tokens), -1, dtype=np.int64)
        onset = np.zeros(len(tokens), dtype=bool)
        current = -1
        for step, token in enumerate(np.asarray(tokens).tolist()):
            if token >= 2:
                current, onset[step] = int(table[token]) + transpose, True
                while current > 127:
                    current -= 12
                while current < 0:
                    current += 12
            elif token != HOLD:
                current = -1
            sounding[step] = current
        return cls(np.asarray(tokens), sounding, onset)

    @property
    def note_count(self) -> int:
        return int(self.onset.sum())


@dataclass
class Player:
    """Turns grid steps of a variation into note messages on one channel (0-15)."""

    channel: int = 0
    velocity: int = 100
    sounding: int | None = None  # the pitch this player has on, if any
    open_notes: set[tuple[int, int]] = field(default_factory=set)  # (channel, pitch) sent on
    offs_to_repeat: set[int] = field(default_factory=set)  # pitches turned off this step
    offs_repeated: set[int] = field(default_factory=set)  # ... said again at the last step
    struck_in_loop: set[int] = field(default_factory=set)  # pitches struck since the sweep
    safety_net: bool = True  # repeat note-offs (tests turn it off to see the plain stream)
    neighbour: Player | None = None  # another player on this port (the echo): never cut its notes

    def note_on(self, pitch: int, channel: int | None = None, velocity: int | None = None
                ) -> mido.Message:
        channel = self.channel if channel is None else channel
        self.open_notes.add((channel, pitch))
        return mido.Message("note_on", channel=channel, note=pitch,
                            velocity=velocity or self.velocity)

    def note_off(self, pitch: int, channel: int | None = None) -> mido.Message:
        channel = self.channel if channel is None else channel
        self.open_notes.discard((channel, pitch))
        if channel == self.channel:
            self.offs_to_repeat.add(pitch)
        return mido.Message("note_off", channel=channel, note=pitch, velocity=0)

    def play_step(self, variation: Variation | None, step: int, audible: bool = True
                  ) -> list[mido.Message]:
        """Messages for grid step ``step`` of the loop.

        After a swap the new variation may hold a pitch that is not the one sounding: then the
        new pitch is struck, so what is heard always matches the variation from this step on.
        A step that is not ``audible`` (a loop that fell far behind) ends notes but strikes none.
        """
        repeats = self.take_repeats()
        if variation is None:
            messages = self.silence()
            return self.repeat_offs(repeats) + messages
        index = step % len(variation.sounding)
        wanted = int(variation.sounding[index])
        if index == 0:
            repeats |= self.take_loop_sweep()
        messages = []
        strike = variation.onset[index] or (wanted >= 0 and wanted != self.sounding)
        if self.sounding is not None and (strike or wanted < 0):
            messages.append(self.note_off(self.sounding))
            self.sounding = None
        if strike and audible:
            played = None if variation.velocity is None else int(variation.velocity[index])
            messages.append(self.note_on(wanted, velocity=played or None))
            self.sounding = wanted
            self.struck_in_loop.add(wanted)
        return self.repeat_offs(repeats) + messages

    def take_repeats(self) -> set[int]:
        """The pitches turned off during the last two steps, to be said off again now: a
        note-off is said three times (a client that misses its cycle on a busy machine can
        lose two cycles' worth in a row)."""
        repeats = self.offs_to_repeat | self.offs_repeated
        self.offs_repeated, self.offs_to_repeat = self.offs_to_repeat, set()
        return repeats if self.safety_net else set()

    def take_loop_sweep(self) -> set[int]:
        """Every pitch struck in the loop that just ended (the loop-boundary sweep)."""
        struck, self.struck_in_loop = self.struck_in_loop, set()
        return struck if self.safety_net else set()

    def repeat_offs(self, pitches: set[int]) -> list[mido.Message]:
        """A note-off for each of ``pitches`` that this player does not hold after this step;
        they go out before the step's own messages, and never for a pitch struck in it."""
        held = self.open_notes | (self.neighbour.open_notes if self.neighbour else set())
        return [mido.Message("note_off", channel=self.channel, note=pitch, velocity=0)
                for pitch in sorted(pitches - self.offs_to_repeat)  # not those off just now
                if pitch != self.sounding and (self.channel, pitch) not in held]

    def silence(self) -> list[mido.Message]:
        """Note-offs for the variation's sounding note."""
        if self.sounding is None:
            return []
        pitch, self.sounding = self.sounding, None
        return [self.note_off(pitch)]

    def panic(self) -> list[mido.Message]:
        """Note-offs for every note this player turned on, on any channel."""
        messages = [self.note_off(pitch, channel) for channel, pitch in sorted(self.open_notes)]
        self.sounding = None
        return messages


def all_notes_off(channels: set[int]) -> list[mido.Message]:
    """CC 123 (All Notes Off) on each 0-based channel: the last resort and the start-up sweep."""
    return [mido.Message("control_change", channel=c, control=ALL_NOTES_OFF, value=0)
            for c in sorted(channels)]
