"""Decodes along one regularised axis, computed in one batch and looked up afterwards.

Two uses: a value-target knob ("6 notes", "register G4") searches the table for the point
nearest the phrase whose decode has the wanted value; an offset knob's 128 positions are
decoded ahead, so turning that knob alone is a table lookup, not a model run.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .attributes import compute
from .model import ModelInfo
from .units import PITCH_VALUED

SEARCH_SPREADS = 6.0  # how far along an axis a value target is looked for, in spreads (val:
# 3.5 met 3-8 notes for >= 90 % of phrases, 5 met 1-9, 6 met 0-9 and 13 notes for 0.885)
SEARCH_POINTS = 97  # candidates over [-6, +6]: one every 0.125 spreads
TOLERANCE = {"register": 1.0}  # a value within this counts as reached (default: exact)
HELD_BY_MORPH = ("register", "notes")  # what the morph knob keeps as it was, in this order:
#   a register move changes the note count a little, a notes move the register less
HOLD_LOOK = (0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # spreads: the first look
#   goes out from the code, finer near it (the phrase keeper makes the axis step near it)
HOLD_ROUNDS = 3  # bisection rounds inside the step of the look that crossed the value


@dataclass(frozen=True)
class AxisTable:
    """Argmax decodes of one base z moved along ``dim`` by each offset (in spreads)."""

    name: str
    dim: int
    offsets: np.ndarray  # (P,) spreads
    tokens: np.ndarray  # (P, L) canonical tokens
    values: np.ndarray  # (P,) the attribute of each decode (NaN: undefined)

    def row(self, offset: float) -> int | None:
        """The index of ``offset`` in the table, if it was decoded."""
        hits = np.flatnonzero(np.isclose(self.offsets, offset, atol=1e-6))
        return int(hits[0]) if len(hits) else None


@dataclass(frozen=True)
class Reach:
    """Where a value target lands: the offset chosen, the value decoded there, and whether it
    is the wanted value (else the nearest the axis gives)."""

    offset: float
    value: float
    reached: bool


def axis_table(model, info: ModelInfo, base: np.ndarray, name: str, offsets: np.ndarray,
               scale: float = 1.0) -> AxisTable:
    """One batched decode of ``base`` (d,) moved along ``name``'s dim by each offset (P,).

    ``scale`` shrinks the move (the prior blend scales every knob's move by 1 - blend).
    """
    dim = info.axes[name].dim
    z = np.repeat(base[None].astype(np.float32), len(offsets), axis=0)  # (P, d)
    z[:, dim] += offsets.astype(np.float32) * float(info.latent.std[dim]) * scale
    tokens = model.decode_tokens(z)
    values = compute(name, tokens, info.vocab, info.grid)
    return AxisTable(name, dim, np.asarray(offsets, dtype=np.float64), tokens, values)


def search_offsets() -> np.ndarray:
    return np.linspace(-SEARCH_SPREADS, SEARCH_SPREADS, SEARCH_POINTS)


def reach(table: AxisTable, target: float) -> Reach:
    """The point nearest the phrase (smallest |offset|) whose decode has the wanted value;
    when none has, the nearest value the axis gives (ties: nearest the phrase)."""
    values = table.values
    defined = np.isfinite(values)
    if not defined.any():
        return Reach(0.0, float("nan"), False)
    gap = np.where(defined, np.abs(values - target), np.inf)
    hit = gap <= TOLERANCE.get(table.name, 0.0) + 1e-9
    candidates = hit if hit.any() else gap == gap.min()
    index = int(np.flatnonzero(candidates)[np.argmin(np.abs(table.offsets[candidates]))])
    return Reach(float(table.offsets[index]), float(values[index]), bool(hit.any()))




def values_of(model, info: ModelInfo, z: np.ndarray, names) -> dict[str, float]:
    """The attributes ``names`` of z's decode, in the model's units (one decode)."""
    return attributes_of(model.decode_tokens(z[None].astype(np.float32))[0], info, names)


def attributes_of(tokens: np.ndarray, info: ModelInfo, names) -> dict[str, float]:
    """The attributes ``names`` of one token sequence (L,), in the model's units."""
    return {name: float(compute(name, tokens[None], info.vocab, info.grid)[0])
            for name in names}


def hold_values(model, info: ModelInfo, z: np.ndarray, values: dict[str, float],
                scale: float = 1.0) -> np.ndarray:
    """z moved along each named axis to where its decode has that value again.

    The morph knob changes what the unregularised dims say, and the decoder listens to them
    too: at the phrase's own notes offset a morphed code can play 13 notes instead of 8.
    ``seek_value`` finds the point nearest the morphed code that has the value (or the
    nearest value), in 13 decodes (~4.5 ms) at most in one direction, twice that when the
    value lies the other way.
    """
    for name, value in values.items():
        if np.isfinite(value):
            z = seek_value(model, info, z, name, value, scale)
    return z


def seek_value(model, info: ModelInfo, z: np.ndarray, name: str, target: float,
               scale: float = 1.0) -> np.ndarray:
    """z moved along ``name``'s axis to the point nearest it whose decode has ``target``:
    a look outwards (HOLD_LOOK) towards the target, bisection inside the step that crossed
    it; the other way too when that found no exact hit (the axis is monotone overall, not
    step by step). The nearest value where none has it."""
    dim = info.axes[name].dim
    unit = float(info.latent.std[dim]) * scale
    tolerance = TOLERANCE.get(name, 0.0) + 1e-9
    tried: dict[float, float] = {}

    def value_at(offset: float) -> float:
        if offset not in tried:
            moved = z.astype(np.float32).copy()
            moved[dim] += offset * unit
            tried[offset] = values_of(model, info, moved, [name])[name]
        return tried[offset]

    def hit(offset: float) -> bool:
        return np.isfinite(value_at(offset)) and abs(value_at(offset) - target) <= tolerance

    if not np.isfinite(value_at(0.0)) or hit(0.0):
        return z
    rising = 1.0 if value_at(0.0) < target else -1.0  # the axis rises with its attribute
    for direction in (rising, -rising):
        look_for(value_at, hit, target, tolerance, direction)
        if any(hit(offset) for offset in tried):
            break
    best = min(tried, key=lambda offset: (
        not hit(offset), abs(tried[offset] - target) if np.isfinite(tried[offset]) else np.inf,
        abs(offset)))
    moved = z.astype(np.float32).copy()
    moved[dim] += best * unit
    return moved


def look_for(value_at, hit, target: float, tolerance: float, direction: float) -> None:
    """Step out along ``direction`` until a point reaches ``target``, then bisect that step
    (the values land in ``value_at``'s memory)."""
    low = 0.0
    for high in (direction * spreads for spreads in HOLD_LOOK):
        value = value_at(high)
        if hit(high):
            return
        if np.isfinite(value) and (value - target) * direction > tolerance:  # passed it
            for _ in range(HOLD_ROUNDS):
                middle = (low + high) / 2
                if hit(middle):
                    return
                passed = np.isfinite(value_at(middle)) and \
                    (value_at(middle) - target) * direction > tolerance
                low, high = (low, middle) if passed else (middle, high)
            return
        low = high


def search_key(model, name: str, z: np.ndarray, scale: float) -> tuple:
    """The cache key of a value search: a phrase keeper's decodes depend on its fidelity and
    on what it follows, so searches under another keeper are other searches."""
    fidelity, follow = getattr(model, "fidelity", 0), getattr(model, "follow", ())
    measured = getattr(model, "origin", None) is not None
    return TableCache.key(name, z, scale, f"search, fidelity {fidelity}, follow {follow}, "
                                          f"moves from the phrase {measured}")


def resolve_targets(model, info: ModelInfo, z: np.ndarray, targets: dict[str, float],
                    shift: int = 0, scale: float = 1.0, cache: TableCache | None = None
                    ) -> tuple[np.ndarray, dict[str, Reach]]:
    """Move z (d,) along each target's axis to where its decode has the wanted value.

    ``shift``: semitones between the user's pitches and the model's (a phrase octave-fitted to
    the model's range); targets and reported values are in the user's pitches.
    """
    reaches = {}
    for name, target in targets.items():
        key = search_key(model, name, z, scale)
        table = cache.get(key) if cache is not None else None
        if table is None:
            table = axis_table(model, info, z, name, search_offsets(), scale)
            if cache is not None:
                cache.put(key, table)
        pitched = name in PITCH_VALUED
        landed = reach(table, target + shift if pitched else target)
        reaches[name] = Reach(landed.offset, landed.value - shift if pitched else landed.value,
                              landed.reached)
        z = z.copy()
        z[table.dim] += landed.offset * float(info.latent.std[table.dim]) * scale
    return z, reaches


def landed_as_played(reaches: dict[str, Reach], tokens: np.ndarray, info: ModelInfo,
                     targets: dict[str, float]) -> dict[str, Reach]:
    """``reaches`` with the notes target's value read off what plays: a phrase keeper decodes
    the wanted count exactly where the axis's own decode skips it."""
    if "notes" not in reaches or "notes" not in targets:
        return reaches
    played = attributes_of(tokens, info, ["notes"])["notes"]
    reached = played == round(targets["notes"])
    return {**reaches, "notes": Reach(reaches["notes"].offset, played, reached)}


class TableCache:
    """The last few axis tables, keyed by axis, base z and scale (least recently used out)."""

    def __init__(self, size: int = 8):
        self.size = size
        self.tables: OrderedDict[tuple, AxisTable] = OrderedDict()

    @staticmethod
    def key(name: str, base: np.ndarray, scale: float, kind: str) -> tuple:
        return (name, kind, round(scale, 6), base.astype(np.float32).tobytes())

    def get(self, key: tuple) -> AxisTable | None:
        table = self.tables.get(key)
        if table is not None:
            self.tables.move_to_end(key)
        return table

    def put(self, key: tuple, table: AxisTable) -> None:
        self.tables[key] = table
        self.tables.move_to_end(key)
        while len(self.tables) > self.size:
            self.tables.popitem(last=False)
