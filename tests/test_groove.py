"""The player's feel carried onto a variation: kept notes as played, new ones by their place."""

from __future__ import annotations

import numpy as np

from glsr_live.groove import Groove


def test_kept_notes_keep_their_feel_and_new_ones_take_their_place_in_the_beat():
    # the phrase: notes on steps 0 (vel 100, on time), 2 (60, 0.2 late), 4 (80, 0.1 early)
    groove = Groove.of_notes(8, [(0, 100, 0.0), (2, 60, 0.2), (4, 80, -0.1)])
    onset = np.zeros(8, dtype=bool)
    onset[[0, 3, 6, 7, 4]] = True
    velocity, offset = groove.feel(onset)
    assert velocity.tolist() == [100, 0, 0, 80, 80, 0, 60, 80]
    # step 3 and 7 (4th 16th): no phrase note there, so the mean of all (80, +0.033)
    assert np.allclose(offset, [0.0, 0, 0, 0.1 / 3, -0.1, 0, 0.2, 0.1 / 3])
    # step 4 is a phrase note: its own; step 0 and 4 share a place, 6 takes step 2's
    assert groove.feel(np.zeros(8, dtype=bool))[0].tolist() == [0] * 8


def test_a_phrase_without_played_notes_plays_new_notes_at_100_on_the_grid():
    velocity, offset = Groove.plain(4, velocity=0).feel(np.array([True, False, True, False]))
    assert velocity.tolist() == [100, 0, 100, 0] and not offset.any()
