"""The player's feel: how hard and how far off the grid each note of the phrase was played.

A variation's note at a step where the phrase has a note keeps that note's velocity and timing
(a kept note sounds as it was played). A new note takes the feel of its place in the beat: the
mean velocity and offset of the phrase's notes on the same 16th of the beat (its downbeats,
its off-beat 8ths, ...), or of all its notes where none was there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

MAX_OFFSET = 0.45  # steps: a note never moves this far from its step (order is kept)


@dataclass(frozen=True)
class Groove:
    velocity: np.ndarray  # (L,) int, the velocity of the phrase's note at each onset, 0 elsewhere
    offset: np.ndarray  # (L,) float, steps from the grid of each onset (+ late), 0 elsewhere
    steps_per_beat: int = 4

    @classmethod
    def plain(cls, length: int, velocity: int = 100, steps_per_beat: int = 4) -> Groove:
        """On the grid at one velocity (a phrase without played timing, ``--quantise``)."""
        return cls(np.full(length, velocity, dtype=np.int64), np.zeros(length),
                   steps_per_beat)

    @classmethod
    def of_notes(cls, length: int, onsets: list[tuple[int, int, float]],
                 steps_per_beat: int = 4) -> Groove:
        """From (step, velocity, offset in steps) of each note of the phrase."""
        velocity, offset = np.zeros(length, dtype=np.int64), np.zeros(length)
        for step, played, late in onsets:
            if 0 <= step < length:
                velocity[step] = max(1, min(127, int(played)))
                offset[step] = float(np.clip(late, -MAX_OFFSET, MAX_OFFSET))
        return cls(velocity, offset, steps_per_beat)

    def quantised(self) -> Groove:
        return Groove(self.velocity, np.zeros_like(self.offset), self.steps_per_beat)

    def feel(self, onset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L,) velocity and (L,) offset for a variation's onsets (bool (L,)): the phrase's own
        where it had a note on that step, else the mean of its notes on that 16th of the beat."""
        velocity, offset = np.zeros(len(onset), dtype=np.int64), np.zeros(len(onset))
        if not (self.velocity > 0).any():
            velocity[onset] = 100
            return velocity, offset
        place_velocity, place_offset = self.place_means
        place = np.arange(len(onset)) % self.steps_per_beat
        velocity[onset], offset[onset] = place_velocity[place[onset]], place_offset[place[onset]]
        own = np.zeros(len(onset), dtype=bool)
        shared = min(len(onset), len(self.velocity))
        own[:shared] = onset[:shared] & (self.velocity[:shared] > 0)
        velocity[own], offset[own] = self.velocity[:shared][own[:shared]], \
            self.offset[:shared][own[:shared]]
        return velocity, offset

    @functools.cached_property
    def place_means(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps_per_beat,) mean velocity (rounded) and offset of the phrase's notes on each
        16th of the beat, or of all its notes where none was there (computed once: every
        decode asks)."""
        played = self.velocity > 0
        place = np.arange(len(played)) % self.steps_per_beat
        velocity = np.zeros(self.steps_per_beat, dtype=np.int64)
        offset = np.zeros(self.steps_per_beat)
        for where in range(self.steps_per_beat):
            same = played & (place == where)
            source = same if same.any() else played
            velocity[where] = int(round(float(self.velocity[source].mean())))
            offset[where] = float(self.offset[source].mean())
        return velocity, offset
