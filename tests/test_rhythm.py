"""Rhythm augmentation: a window's own pitches on a hook's rhythm, canonical, off the beat."""

from __future__ import annotations

import torch
from glsr_train.rhythm import KINDS, canonical_start, double_time, halved, notes_of, syncopate, vary

from glsr_live.tokens import HOLD, REST

# a folk line of quarters and eighths, a bar's rest at the end of bar 2
ROW = [10, 1, 1, 1, 12, 1, 14, 1, 15, 1, 1, 1, 12, 1, 1, 1,
       10, 1, 12, 1, 14, 1, 1, 1, 0, 0, 0, 0, 10, 1, 1, 1]


def pitches(row: list[int]) -> list[int]:
    return [token for _, _, token in notes_of(row)]


def off_beat(row: list[int]) -> int:
    return sum(onset % 4 != 0 for onset, _, _ in notes_of(row))


def canonical(row: list[int]) -> bool:
    return all(not (token == HOLD and (step == 0 or row[step - 1] == REST))
               for step, token in enumerate(row))


def test_each_kind_keeps_the_tune_and_moves_onsets_off_the_beat():
    torch.manual_seed(0)
    for kind in KINDS:
        moved = 0
        for _ in range(20):
            row = vary(ROW, kind, torch.rand(32, 2))
            assert len(row) == 32 and canonical(row), (kind, row)
            if kind in ("anticipate", "delay"):
                assert pitches(row) == pitches(ROW), kind  # the same notes, shifted
            if kind == "split":  # re-struck notes: the same pitches, some twice
                assert sorted(set(pitches(row))) == sorted(set(pitches(ROW)))
            moved += off_beat(row) > off_beat(ROW)
        assert moved >= 10, kind  # ROW has no onset off the beat but its eighths


def test_a_share_of_the_batch_is_varied_and_none_draws_nothing():
    batch = torch.tensor([ROW] * 8)
    torch.manual_seed(1)
    varied = syncopate(batch, 0.5)
    assert int((varied != batch).any(1).sum()) >= 3
    state = torch.get_rng_state()
    assert syncopate(batch, 0.0) is batch
    assert torch.equal(state, torch.get_rng_state())  # golden runs without it are unchanged


def test_double_time_plays_two_windows_twice_as_fast_on_every_step():
    """Each note half as long, the pitches in order; an onset off the eighth grid moves onto
    it; the replaced row is itself then another row, each halved, and canonical."""
    line = [pitch for _, _, pitch in notes_of(ROW)]
    fast = halved(torch.tensor([ROW]))[0].tolist()
    assert len(fast) == 16 and pitches(fast) == line
    assert [end - onset for onset, end, _ in notes_of(fast)] == [2, 1, 1, 2, 2, 1, 1, 2, 2]
    off_grid = [1, 20, 1, 21] * 8  # a cut-in hold, then onsets on odd steps
    assert halved(torch.tensor([off_grid]))[0].tolist()[:2] == [20, 21]
    batch = torch.tensor([ROW, off_grid, [12, 1, 1, 1] * 8, ROW])
    torch.manual_seed(2)
    varied = double_time(batch, 0.5)
    changed = (varied != batch).any(1).nonzero().flatten().tolist()
    assert len(changed) == 2
    for row in changed:
        tokens = varied[row].tolist()
        assert canonical(tokens), tokens
        assert tokens[:16] == halved(canonical_start(batch[row:row + 1]))[0].tolist()
    state = torch.get_rng_state()
    assert double_time(batch, 0.0) is batch
    assert torch.equal(state, torch.get_rng_state())
