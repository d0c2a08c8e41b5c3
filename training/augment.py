"""Batch augmentation: sparser phrases than the chorales hold.

Bach's soprano windows almost never have fewer than 3 notes (train: 0 windows with none), but a
player often plays 1-3 notes, and whole bars of rest occur in the test chorales. Unseen, such
phrases land anywhere on the note axis and decode as held notes. Thinning some windows of each
batch (dropping notes to rests) shows the model the sparse end of the note axis.
"""

from __future__ import annotations

import torch

from glsr_live.tokens import HOLD, REST


def note_indices(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) -> (B, L): 1-based index of the note sounding at each step, 0 where none does."""
    onsets = tokens > HOLD  # pitch tokens follow REST and HOLD in the vocabulary
    index = onsets.cumsum(dim=1)
    # a rest ends the note before it: only onsets and holds after an onset belong to a note
    sounding = onsets.clone()
    for step in range(1, tokens.shape[1]):
        sounding[:, step] |= (tokens[:, step] == HOLD) & sounding[:, step - 1]
    return torch.where(sounding, index, torch.zeros_like(index))


def thin_notes(tokens: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) -> (B, L) tokens and (B,) mask: a random ``fraction`` of the rows lose each of
    their notes with a probability drawn U(0, 1) per row.

    A dropped note's onset and holds become rests. The rows are drawn at random, so no later
    term that takes the first rows of a batch sees only thinned (or only whole) windows.
    """
    count = round(fraction * tokens.shape[0])
    chosen = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    if count == 0:
        return tokens, chosen
    chosen[torch.randperm(tokens.shape[0], device=tokens.device)[:count]] = True
    rows = tokens[chosen]
    index = note_indices(rows)  # (n, L)
    drop_probability = torch.rand(count, 1, device=tokens.device)  # one per window
    dropped = torch.rand(count, tokens.shape[1] + 1, device=tokens.device) < drop_probability
    dropped[:, 0] = False  # index 0: steps that belong to no note stay as they are
    thinned = tokens.clone()
    thinned[chosen] = torch.where(dropped.gather(1, index), torch.full_like(rows, REST), rows)
    return thinned, chosen
