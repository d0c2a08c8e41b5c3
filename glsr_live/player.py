"""Scheduled output with open-note tracking: every note-on sent is matched by a note-off."""

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

    def note_on(self, pitch: int, channel: int | None = None, velocity: int | None = None
                ) -> mido.Message:
        channel = self.channel if channel is None else channel
        self.open_notes.add((channel, pitch))
        return mido.Message("note_on", channel=channel, note=pitch,
                            velocity=velocity or self.velocity)

    def note_off(self, pitch: int, channel: int | None = None) -> mido.Message:
        channel = self.channel if channel is None else channel
        self.open_notes.discard((channel, pitch))
        return mido.Message("note_off", channel=channel, note=pitch, velocity=0)

    def play_step(self, variation: Variation | None, step: int) -> list[mido.Message]:
        """Messages for grid step ``step`` of the loop.

        After a swap the new variation may hold a pitch that is not the one sounding: then the
        new pitch is struck, so what is heard always matches the variation from this step on.
        """
        if variation is None:
            return self.silence()
        index = step % len(variation.sounding)
        wanted = int(variation.sounding[index])
        messages = []
        strike = variation.onset[index] or (wanted >= 0 and wanted != self.sounding)
        if self.sounding is not None and (strike or wanted < 0):
            messages.append(self.note_off(self.sounding))
            self.sounding = None
        if strike:
            messages.append(self.note_on(wanted))
            self.sounding = wanted
        return messages

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
