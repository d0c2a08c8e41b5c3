"""The code a knob setting plays: one composition for the live engine and for ``render``.

In this order: the phrase's code morphed towards slot B (its unregularised dims), moved along
each axis by the offset knobs, blended towards a prior sample (every later move along an axis
scaled by 1 - blend); while morphing, note count and register held at what the unmorphed
setting plays; then each value knob resolved along its axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .axis import HELD_BY_MORPH, Reach, TableCache, attributes_of, hold_values, resolve_targets
from .axis import values_of as decoded_values
from .model import ModelInfo, morph_latent, offset_latent


@dataclass
class Setting:
    """Where the knobs are: offsets in spreads, targets in the attributes' own units (the
    player's pitches), morph 0..1 towards slot B, prior blend 0..1."""

    offsets: dict[str, float] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)
    morph: float = 0.0
    prior: float = 0.0

    def moves_the_code(self) -> bool:
        """Any knob off its centre that changes the code (temperature aside)."""
        return bool(any(self.offsets.values()) or self.targets or self.morph or self.prior)

    def offsets_only(self) -> bool:
        """Only offset knobs move: the edit carries their move onto the phrase
        (``PhraseKeeper.origin``); a target, a morph or a prior blend asks for values."""
        return not (self.targets or self.morph or self.prior)


@dataclass
class Source:
    """What a setting starts from: the phrase's code and tokens, and what it blends with."""

    code: np.ndarray  # (d,) the phrase's posterior mean
    tokens: np.ndarray  # (L,) the phrase in the model's vocabulary
    destination: np.ndarray | None = None  # (d,) slot B's code, for the morph
    prior_code: np.ndarray | None = None  # (d,) the prior sample the prior knob blends to
    shift: int = 0  # semitones from the player's pitches to the model's


def base_code(source: Source, setting: Setting, info: ModelInfo, leave_out: str | None = None,
              morph: bool = True) -> np.ndarray:
    """(d,) the phrase (morphed unless ``morph`` is False) moved by every offset (but
    ``leave_out``'s), blended towards the prior sample."""
    start = source.code
    if morph and setting.morph > 0 and source.destination is not None:
        start = morph_latent(source.code, source.destination, setting.morph, info)
    offsets = {k: v for k, v in setting.offsets.items() if k != leave_out}
    z = offset_latent(start, offsets, info)
    if setting.prior > 0 and source.prior_code is not None:
        z = (1.0 - setting.prior) * z + setting.prior * source.prior_code
    return z.astype(np.float32)


def axis_scale(setting: Setting) -> float:
    """How far a move along an axis goes once the prior blend has shrunk the code."""
    return 1.0 - setting.prior


def unmorphed_values(editor, source: Source, setting: Setting, info: ModelInfo,
                     names: list[str]) -> dict[str, float]:
    """The attributes of what the setting would play without the morph: the phrase itself
    when no other knob moves it, else the decode."""
    if not (any(setting.offsets.values()) or setting.targets or setting.prior):
        return attributes_of(source.tokens, info, names)
    return decoded_values(editor, info, base_code(source, setting, info, morph=False), names)


def compose(editor, source: Source, setting: Setting, info: ModelInfo,
            cache: TableCache | None = None) -> tuple[np.ndarray, dict[str, Reach]]:
    """(d,) the code the setting plays, and where each value target landed."""
    scale = axis_scale(setting)
    z = base_code(source, setting, info)
    if setting.morph > 0 and source.destination is not None:
        held = [n for n in HELD_BY_MORPH if n in info.axes and n not in setting.targets]
        z = hold_values(editor, info, z, unmorphed_values(editor, source, setting, info, held),
                        scale)
    targets = {k: v for k, v in setting.targets.items() if k in info.axes}
    return resolve_targets(editor, info, z, targets, source.shift, scale, cache)
