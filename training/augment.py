"""Batch augmentation: altered copies of phrases whose attributes differ in a known way.

Thinning: Bach's soprano windows almost never have fewer than 3 notes (train: 0 windows with
none), but a player often plays 1-3 notes, and whole bars of rest occur in the test chorales.
Unseen, such phrases land anywhere on the note axis and decode as held notes. Thinning some
windows of each batch (dropping notes to rests) shows the model the sparse end of the note axis.

Stretching: the same phrase with its intervals widened or narrowed about its mean pitch, so
that its pitch range changes while its rhythm, contour and register stay. The restoration term
then asks the decoder to turn one into the other by a move along the range axis alone.
"""

from __future__ import annotations

import torch

from glsr_live.tokens import HOLD, REST

from .config import AugmentConfig


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


def stretch_range(tokens: torch.Tensor, fraction: float, pitches: torch.Tensor,
                  exclude: torch.Tensor | None = None, widest: float = 2.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) -> (B, L) tokens and (B,) mask: a random ``fraction`` of the rows (none of
    ``exclude``) get every pitch p moved to round(c + k (p - c)), c the row's mean onset pitch
    and k log-uniform in [1/widest, widest].

    ``pitches`` (K,) is the vocabulary's pitch table (-1 for rest and hold). Rows with fewer
    than two notes, or whose stretch would leave the vocabulary, stay as they are and unmasked.
    Rhythm is kept token for token, so stretched windows stay canonical.
    """
    count = round(fraction * tokens.shape[0])
    chosen = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    if count == 0:
        return tokens, chosen
    free = torch.ones_like(chosen) if exclude is None else ~exclude
    candidates = free.nonzero().squeeze(1)
    picked = candidates[torch.randperm(len(candidates), device=tokens.device)[:count]]
    rows = tokens[picked]  # (n, L)
    onset = rows > HOLD
    pitch = pitches[rows].to(torch.float32)  # (n, L), -1 off onsets
    centre = (pitch * onset).sum(1, keepdim=True) / onset.sum(1, keepdim=True).clamp(min=1)
    factor = widest ** (torch.rand(len(picked), 1, device=tokens.device) * 2 - 1)  # (n, 1)
    moved = torch.round(centre + factor * (pitch - centre)).to(torch.int64)
    low, high = int(pitches[HOLD + 1]), int(pitches[-1])
    fits = (((moved >= low) & (moved <= high)) | ~onset).all(1) & (onset.sum(1) >= 2)
    stretched = tokens.clone()
    stretched[picked] = torch.where(onset & fits[:, None], moved - low + HOLD + 1, rows)
    chosen[picked[fits]] = True
    return stretched, chosen


def augmented(batch: torch.Tensor, augment: AugmentConfig, step: int, pitches: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) -> (B, L) tokens and (B,) mask of the rows thinned or stretched at ``step``."""
    thinned, thin_mask = thin_notes(batch, augment.thinning.at(step))
    stretched, stretch_mask = stretch_range(thinned, augment.stretching.at(step), pitches,
                                            exclude=thin_mask, widest=augment.widest_stretch)
    return stretched, thin_mask | stretch_mask
