"""Knob presets: MIDI CC -> latent offsets along regularised axes, and a few control knobs.

A preset is TOML (see presets/knobs/default.toml). Each ``[[knob]]`` maps a CC number (and
optionally a channel) to a target: an attribute name from the model (``notes``, ``register``,
...) moved within ``[min, max]`` in units of that latent dim's training spread, or, with
``mode = "value"``, asking for an attribute value within ``[min, max]`` in the attribute's own
unit (2 to 16 notes; register as MIDI pitches or note names, "C4" to "C6"), or one of the
controls ``temperature``, ``prior`` (blend towards a sample of the prior), ``reseed`` (draw a new
prior sample), ``freeze`` (ignore new phrases and knob moves), ``capture`` and ``slot_a`` (take
the last two bars as the phrase now), ``slot_b`` (take them as the morph destination) and
``morph`` (0..1: the unregularised dims from the phrase's code to slot B's, the regularised
axes held where their knobs are) and ``keep`` (store the playing variation as a MIDI file in
the session folder of ``--record``).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from .attributes import ATTRIBUTES
from .units import parse_note_name

CONTROLS = ("temperature", "prior", "reseed", "freeze", "capture", "morph", "slot_a", "slot_b",
            "keep", "fidelity")
BUTTONS = ("reseed", "freeze", "capture", "slot_a", "slot_b", "keep")
CURVES = ("linear", "exponential", "s-curve")
MODES = ("offset", "value")
# value knobs' default ranges
VALUE_RANGES = {"notes": (2.0, 16.0), "register": (60.0, 84.0), "range": (0.0, 19.0)}
APPLY_AT = ("step", "bar")
PICKUP_WINDOW = 3  # CC values: a knob in pickup mode takes over within this distance


class PresetError(ValueError):
    """A preset the user must fix; the message is one line."""


@dataclass(frozen=True)
class Knob:
    cc: int
    target: str
    channel: int | None = None  # 1-16, None = any channel
    min: float = -3.0
    max: float = 3.0
    curve: str = "linear"
    default: int = 64  # the CC value the knob starts at (soft takeover reference)
    mode: str = "offset"  # "value": min/max are attribute values, not latent offsets

    def value(self, cc_value: int) -> float:
        """The knob's output for a CC value 0..127, with a centre detent for bipolar ranges."""
        if self.min < 0 < self.max and abs(cc_value - 64) <= 1:
            return 0.0
        return self.min + (self.max - self.min) * shape(cc_value / 127.0, self.curve)


@dataclass(frozen=True)
class Options:
    channel: int = 1  # output channel, 1-16
    input_channels: tuple[int, ...] = ()  # empty = every channel
    apply_at: str = "step"
    soft_takeover: bool = True
    passthrough: bool = False
    passthrough_channel: int = 2
    auto_capture: bool = True  # a phrase ends when its two bars are full


@dataclass(frozen=True)
class Preset:
    options: Options = field(default_factory=Options)
    knobs: tuple[Knob, ...] = ()

    def find(self, cc: int, channel: int) -> Knob | None:
        """The knob for CC ``cc`` on MIDI channel ``channel`` (1-16)."""
        for knob in self.knobs:
            if knob.cc == cc and knob.channel in (None, channel):
                return knob
        return None

    def output_channels(self) -> set[int]:
        channels = {self.options.channel}
        if self.options.passthrough:
            channels.add(self.options.passthrough_channel)
        return channels


def shape(x: float, curve: str) -> float:
    """Map 0..1 to 0..1: linear, exponential (fine control near the low end), or s-curve."""
    x = min(1.0, max(0.0, x))
    if curve == "exponential":
        return (math.exp(3 * x) - 1) / (math.exp(3) - 1)
    if curve == "s-curve":
        return 0.5 - 0.5 * math.cos(math.pi * x)
    return x


def inverse_shape(y: float, curve: str) -> float:
    y = min(1.0, max(0.0, y))
    if curve == "exponential":
        return math.log(1 + y * (math.exp(3) - 1)) / 3
    if curve == "s-curve":
        return math.acos(1 - 2 * y) / math.pi
    return y


# ---------------------------------------------------------------- parsing


def _check_int(value, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PresetError(f"{what} must be an integer {low}..{high}, got {value!r}")
    return value


def _check_number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PresetError(f"{what} must be a number, got {value!r}")
    return float(value)


def _reject_unknown(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise PresetError(f"unknown key(s) in {where}: {', '.join(unknown)} "
                          f"(allowed: {', '.join(sorted(allowed))})")


def parse_knob(raw: dict, index: int, attributes: set[str]) -> Knob:
    where = f"knob #{index + 1}"
    if not isinstance(raw, dict):
        raise PresetError(f"{where} must be a table")
    _reject_unknown(raw, {f.name for f in fields(Knob)}, where)
    if "cc" not in raw or "target" not in raw:
        raise PresetError(f"{where} needs 'cc' and 'target'")
    cc = _check_int(raw["cc"], 0, 127, f"{where}: cc")
    target = raw["target"]
    # A knob for an attribute this model has no axis for (the range knob of the default preset
    # with bach-soprano) is kept and does nothing; a misspelt target is an error.
    if not isinstance(target, str) or target not in attributes | set(ATTRIBUTES) | set(CONTROLS):
        raise PresetError(f"{where}: target {target!r} is neither an attribute of the model "
                          f"({', '.join(sorted(attributes)) or 'none'}) nor one of "
                          f"{', '.join(CONTROLS)}")
    channel = raw.get("channel")
    if channel is not None:
        channel = _check_int(channel, 1, 16, f"{where}: channel")
    mode = raw.get("mode", "offset")
    if mode not in MODES or (mode == "value" and target in CONTROLS):
        raise PresetError(f"{where}: mode must be 'offset' or 'value' (value: attribute knobs "
                          f"only), got {mode!r}")
    bounds = {"temperature": (0.0, 1.5), "prior": (0.0, 1.0), "morph": (0.0, 1.0),
              "fidelity": (0.0, 8.0)}.get(target, (-3.0, 3.0))
    if mode == "value":
        bounds = VALUE_RANGES.get(target, (0.0, 1.0))
    low = _value_bound(raw.get("min", bounds[0]), f"{where}: min")
    high = _value_bound(raw.get("max", bounds[1]), f"{where}: max")
    if target == "temperature" and min(low, high) < 0:
        raise PresetError(f"{where}: temperature cannot be negative")
    curve = raw.get("curve", "linear")
    if curve not in CURVES:
        raise PresetError(f"{where}: curve must be one of {', '.join(CURVES)}, got {curve!r}")
    default_cc = 127 if target == "fidelity" else 64 if low < 0 < high else 0
    default = _check_int(raw.get("default", default_cc), 0, 127, f"{where}: default")
    return Knob(cc, target, channel, low, high, curve, default, mode)


def _value_bound(value, what: str) -> float:
    """A number, or a note name ('C4' = 60) for pitch values."""
    if isinstance(value, str):
        try:
            return float(parse_note_name(value))
        except ValueError as error:
            raise PresetError(f"{what}: {error}") from None
    return _check_number(value, what)


def parse_options(raw: dict) -> Options:
    if not isinstance(raw, dict):
        raise PresetError("[options] must be a table")
    _reject_unknown(raw, {f.name for f in fields(Options)}, "[options]")
    values = dict(raw)
    for key in ("channel", "passthrough_channel"):
        if key in values:
            _check_int(values[key], 1, 16, f"options.{key}")
    if "input_channels" in values:
        channels = values["input_channels"]
        if not isinstance(channels, list):
            raise PresetError("options.input_channels must be a list of channels 1..16")
        values["input_channels"] = tuple(_check_int(c, 1, 16, "options.input_channels")
                                         for c in channels)
    if values.get("apply_at", "step") not in APPLY_AT:
        raise PresetError(f"options.apply_at must be one of {', '.join(APPLY_AT)}")
    for key in ("soft_takeover", "passthrough", "auto_capture"):
        if key in values and not isinstance(values[key], bool):
            raise PresetError(f"options.{key} must be true or false")
    return Options(**values)


def parse_preset(raw: dict, attributes: set[str]) -> Preset:
    _reject_unknown(raw, {"options", "knob"}, "the preset")
    knobs_raw = raw.get("knob", [])
    if not isinstance(knobs_raw, list):
        raise PresetError("knobs must be written as [[knob]] tables")
    knobs = tuple(parse_knob(k, i, attributes) for i, k in enumerate(knobs_raw))
    seen: set[tuple[int, int | None]] = set()
    for knob in knobs:
        if (knob.cc, knob.channel) in seen:
            raise PresetError(f"CC {knob.cc} is mapped twice on the same channel")
        seen.add((knob.cc, knob.channel))
    return Preset(parse_options(raw.get("options", {})), knobs)


def load_preset(path: str | Path, attributes: set[str]) -> Preset:
    """Read and validate a preset against the model's attribute names."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PresetError(f"{path}: no such preset file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PresetError(f"{path}: not valid TOML ({error})") from None
    try:
        return parse_preset(raw, attributes)
    except PresetError as error:
        raise PresetError(f"{path}: {error}") from None


def dump_preset(preset: Preset) -> str:
    """TOML text of a preset (what ``glsr-live learn`` writes)."""
    options = preset.options
    lines = ["[options]", f"channel = {options.channel}",
             f"input_channels = {list(options.input_channels)}",
             f'apply_at = "{options.apply_at}"',
             f"soft_takeover = {str(options.soft_takeover).lower()}",
             f"passthrough = {str(options.passthrough).lower()}",
             f"passthrough_channel = {options.passthrough_channel}",
             f"auto_capture = {str(options.auto_capture).lower()}", ""]
    for knob in preset.knobs:
        lines += ["[[knob]]", f"cc = {knob.cc}", f'target = "{knob.target}"']
        if knob.channel is not None:
            lines.append(f"channel = {knob.channel}")
        lines += [f"min = {knob.min}", f"max = {knob.max}", f'curve = "{knob.curve}"',
                  f"default = {knob.default}", f'mode = "{knob.mode}"', ""]
    return "\n".join(lines)
