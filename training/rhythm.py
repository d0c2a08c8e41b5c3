"""Rhythm augmentation: training windows given the rhythms of hooks, so off-beat phrases exist.

The four collections are folk and chorale rhythm: onsets on the beat and the eighth. A phrase
played into the instrument is often a hook: onsets a 16th before or after the beat, notes tied
over it, tresillo and dembow figures. A share of each batch is replaced by such variants of
its own windows (pitches and contour kept), learnt as phrases in their own right (they are
their own reconstruction target, unlike thinned or stretched copies). Per row, one of:

* **anticipate**: each onset on the beat moves a 16th (or an eighth) earlier with probability
  1/2, the note before it shortened: the note is tied over the beat it used to start on;
* **delay**: each onset of a note at least two 16ths long moves a 16th later with probability
  1/2, the note before tied into its place (or a rest where there was one);
* **split**: notes of four 16ths or more re-struck on a 16th off the beat;
* **figure**: each bar's onsets replaced by a syncopated figure (``syncopated.FIGURES``), the
  window's pitches laid on them in order.

**Double time** (``[augment] double_time``) is the fiddle's rhythm: two windows of the batch
played twice as fast, one after the other, so a phrase of 16ths on every step exists to learn
from (the collections' reels are eighths; a reel or hornpipe written in 16ths has 27 onsets in
32 steps where theirs have 15).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from glsr_live.tokens import HOLD, REST

from .syncopated import FIGURES, STEPS_PER_BAR

if TYPE_CHECKING:
    from .config import AugmentConfig

KINDS = ("anticipate", "delay", "split", "figure")
FIGURE_ONSETS = list(FIGURES.values())


def notes_of(row: list[int]) -> list[list[int]]:
    """[onset, end, pitch token] of each note of one window's tokens."""
    notes: list[list[int]] = []
    for step, token in enumerate(row):
        if token > HOLD:
            notes.append([step, step + 1, token])
        elif token == HOLD and notes and notes[-1][1] == step:
            notes[-1][1] = step + 1
    return notes


def tokens_of(notes: list[list[int]], length: int) -> list[int]:
    row = [REST] * length
    for onset, end, token in notes:
        if 0 <= onset < length and end > onset:
            row[onset] = token
            for step in range(onset + 1, min(end, length)):
                row[step] = HOLD
    return row


def anticipate(notes: list[list[int]], draw: torch.Tensor) -> list[list[int]]:
    """``draw`` (len(notes), 2) uniform: whether each on-beat onset moves, and by how much."""
    for index, note in enumerate(notes):
        if note[0] % 4 or note[0] == 0 or draw[index, 0] >= 0.5:
            continue
        early = 1 if draw[index, 1] < 0.7 else 2
        floor = notes[index - 1][0] + 1 if index else 0
        onset = max(floor, note[0] - early)
        if onset < note[0]:
            if index:
                notes[index - 1][1] = min(notes[index - 1][1], onset)
            note[0] = onset
    return notes


def delay(notes: list[list[int]], draw: torch.Tensor) -> list[list[int]]:
    for index, note in enumerate(notes):
        if note[1] - note[0] < 2 or draw[index, 0] >= 0.5:
            continue
        if index and notes[index - 1][1] == note[0]:
            notes[index - 1][1] += 1  # tied into the 16th the note left
        note[0] += 1
    return notes


def split(notes: list[list[int]], draw: torch.Tensor) -> list[list[int]]:
    out = []
    for index, note in enumerate(notes):
        onset, end, token = note
        if end - onset >= 4 and draw[index, 0] < 0.7:
            at = onset + (3 if draw[index, 1] < 0.5 else 1)  # a 16th off the beat
            out += [[onset, at, token], [at, end, token]]
        else:
            out.append(note)
    return out


def figure(notes: list[list[int]], draw: torch.Tensor, length: int) -> list[list[int]]:
    """The window's pitches, in order (again from the first if the figures have more
    onsets), on a figure per bar; each held to the next onset."""
    pitches = [token for _, _, token in notes]
    onsets = []
    for bar in range(length // STEPS_PER_BAR):
        chosen = FIGURE_ONSETS[int(draw[bar, 0] * len(FIGURE_ONSETS)) % len(FIGURE_ONSETS)]
        onsets += [bar * STEPS_PER_BAR + step for step in chosen]
    ends = onsets[1:] + [length]
    return [[onset, end, pitches[index % len(pitches)]]
            for index, (onset, end) in enumerate(zip(onsets, ends, strict=True))]


def vary(row: list[int], kind: str, draw: torch.Tensor) -> list[int]:
    """One window's tokens with ``kind``'s rhythm; unchanged if it has under two notes."""
    notes = notes_of(row)
    if len(notes) < 2:
        return row
    if kind == "figure":
        return tokens_of(figure(notes, draw, len(row)), len(row))
    changed = {"anticipate": anticipate, "delay": delay, "split": split}[kind](notes, draw)
    return tokens_of(changed, len(row))


def syncopate(batch: torch.Tensor, share: float) -> torch.Tensor:
    """(B, L) -> (B, L): a random ``share`` of the rows given a hook's rhythm (one kind each,
    drawn at random); the others as they were."""
    count = round(share * batch.shape[0])
    if count == 0:
        return batch
    rows = torch.randperm(batch.shape[0])[:count]
    kinds = torch.randint(len(KINDS), (count,))
    draws = torch.rand(count, batch.shape[1], 2)  # per row: per note (or bar) two uniforms
    varied = batch.clone()
    for row, kind, draw in zip(rows.tolist(), kinds.tolist(), draws, strict=True):
        tokens = vary(batch[row].tolist(), KINDS[kind], draw)
        varied[row] = torch.tensor(tokens, dtype=batch.dtype)
    return varied


def halved(rows: torch.Tensor) -> torch.Tensor:
    """(N, L) -> (N, L / 2): each window at twice the speed. Step k is step 2k, or step 2k + 1
    where only that one starts a note (an onset off the eighth grid moves onto it); a note
    struck on both keeps the first."""
    even, odd = rows[:, 0::2], rows[:, 1::2]
    return torch.where((odd > HOLD) & (even <= HOLD), odd, even)


def canonical_start(rows: torch.Tensor) -> torch.Tensor:
    """(N, L) -> (N, L): a first-step hold (a window cut in a note) made a rest; the rest of a
    window is canonical already, so this is ``tokens.canonical`` for a batch, in torch."""
    rows = rows.clone()
    rows[:, 0] = torch.where(rows[:, 0] == HOLD, torch.full_like(rows[:, 0], REST), rows[:, 0])
    return rows


def double_time(batch: torch.Tensor, share: float) -> torch.Tensor:
    """(B, L) -> (B, L): a random ``share`` of the rows replaced by two rows of the batch (the
    row itself, then another) at twice the speed; the others as they were."""
    count = round(share * batch.shape[0])
    if count == 0:
        return batch
    rows = torch.randperm(batch.shape[0])[:count]
    partners = torch.randint(batch.shape[0], (count,))
    first = halved(canonical_start(batch[rows]))
    second = halved(canonical_start(batch[partners]))
    varied = batch.clone()
    varied[rows] = torch.cat([first, second], dim=1)
    return varied


def rhythm_rows(batch: torch.Tensor, augment: AugmentConfig, step: int) -> torch.Tensor:
    """(B, L) -> (B, L): the batch with ``augment``'s hook rhythms and double-time rows at
    ``step``; these rows are their own reconstruction targets."""
    return double_time(syncopate(batch, augment.rhythm.at(step)), augment.double_time.at(step))
