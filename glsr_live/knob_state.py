"""The live state of the knobs: each knob's CC value, soft takeover, and what the knobs ask
for now (offsets, targets, controls). The preset schema they follow is ``knobs.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from .knobs import CONTROLS, PICKUP_WINDOW, Knob, Preset


@dataclass
class KnobState:
    """Current CC value of each knob, with soft takeover (pickup)."""

    preset: Preset
    values: dict[int, int] = field(default_factory=dict)  # knob index -> CC value
    picked_up: dict[int, bool] = field(default_factory=dict)
    last_physical: dict[int, int] = field(default_factory=dict)
    touched: set[int] = field(default_factory=set)  # value knobs act once moved

    def __post_init__(self) -> None:
        for index, knob in enumerate(self.preset.knobs):
            self.values.setdefault(index, knob.default)
            # a value knob asks for nothing until moved: there is no value to take over from
            self.picked_up.setdefault(index, not self.preset.options.soft_takeover
                                      or knob.mode == "value")

    def move(self, knob: Knob, cc_value: int) -> bool:
        """Apply a CC value; returns True if the knob's logical value changed."""
        index = self.preset.knobs.index(knob)
        previous_physical = self.last_physical.get(index)
        self.last_physical[index] = cc_value
        if not self.picked_up[index]:
            current = self.values[index]
            crossed = previous_physical is not None and (
                min(previous_physical, cc_value) <= current <= max(previous_physical, cc_value))
            if abs(cc_value - current) > PICKUP_WINDOW and not crossed:
                return False
            self.picked_up[index] = True
        first_touch = index not in self.touched
        self.touched.add(index)
        if self.values[index] == cc_value and not (first_touch and knob.mode == "value"):
            return False
        self.values[index] = cc_value
        return True

    def value_of(self, target: str) -> float | None:
        for index, knob in enumerate(self.preset.knobs):
            if knob.target == target:
                return knob.value(self.values[index])
        return None

    def offsets(self) -> dict[str, float]:
        """Attribute name -> offset in units of the latent dim's spread (offset knobs)."""
        return {knob.target: knob.value(self.values[i]) for i, knob in
                enumerate(self.preset.knobs) if knob.target not in CONTROLS
                and knob.mode == "offset"}

    def targets(self) -> dict[str, float]:
        """Attribute name -> wanted value (value knobs that have been moved); note counts are
        whole numbers."""
        wanted = {}
        for index, knob in enumerate(self.preset.knobs):
            if knob.mode == "value" and index in self.touched:
                value = knob.value(self.values[index])
                wanted[knob.target] = float(round(value)) if knob.target == "notes" else value
        return wanted

    def waiting_for_pickup(self) -> list[str]:
        return [k.target for i, k in enumerate(self.preset.knobs) if not self.picked_up[i]]
