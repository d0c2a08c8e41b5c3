"""glsr-live render: the offline twin of the daemon, MIDI file in, variations out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .axis import HELD_BY_MORPH, hold_values, parse_note_name, resolve_targets, values_of
from .midifile import beat_notes_to_grid, read_notes, write_notes
from .model import Model, ModelError, morph_latent, offset_latent
from .pianoroll import write_roll
from .tokens import Note, fit_notes, notes_to_tokens, tokens_to_notes, unfold_notes


class RenderError(ValueError):
    """A render request the user must fix; one line."""


@dataclass(frozen=True)
class Sweep:
    name: str
    start: float
    stop: float
    steps: int

    def values(self) -> list[float]:
        return np.linspace(self.start, self.stop, self.steps).tolist()


def parse_knob_setting(text: str) -> tuple[str, float]:
    return parse_setting(text, "--knob wants NAME=VALUE, e.g. notes=1.5", float)


def parse_setting(text: str, usage: str, convert) -> tuple[str, float]:
    """NAME=VALUE with ``convert(value)``; a RenderError with ``usage`` otherwise."""
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(convert(value))
    except ValueError:
        raise RenderError(f"{usage}; got {text!r}") from None


def parse_sweep(text: str) -> Sweep:
    name, sep, spec = text.partition("=")
    parts = spec.split(":")
    try:
        if not sep or len(parts) != 3:
            raise ValueError
        sweep = Sweep(name.strip(), float(parts[0]), float(parts[1]), int(parts[2]))
    except ValueError:
        raise RenderError(f"--sweep wants NAME=FROM:TO:STEPS, e.g. notes=-2:2:5; got {text!r}"
                          ) from None
    if not 1 <= sweep.steps <= 256:
        raise RenderError("--sweep STEPS must be 1..256")
    return sweep


def parse_target(text: str) -> tuple[str, float]:
    """NAME=VALUE in the attribute's unit: notes=6, register=G4 or register=67."""
    return parse_setting(text, "--target wants NAME=VALUE in the attribute's unit, e.g. "
                               "notes=6 or register=G4", number_or_note)


def number_or_note(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float(parse_note_name(value))


def phrase_of_file(path: Path, model: Model, track: str | None = None
                   ) -> tuple[np.ndarray, int]:
    """Tokens of the first L steps of a MIDI file (monophonic, octave-fitted) and the shift."""
    grid = model.info.grid
    notes = [n for n in beat_notes_to_grid(read_notes(path, track), grid)
             if n.onset < grid.seq_len]
    if not notes:
        raise RenderError(f"{path}: no notes in its first {grid.seq_len} steps")
    fitted, shift = fit_notes(notes, model.info.vocab)
    return notes_to_tokens(fitted, model.info.vocab, grid.seq_len), shift


def settings_list(knobs: list[tuple[str, float]], sweeps: list[Sweep]) -> list[dict[str, float]]:
    """One dict of offsets per variation: the fixed knobs, then every point of each sweep."""
    base = dict(knobs)
    if not sweeps:
        return [base] if base else [{}]
    out = []
    for sweep in sweeps:
        out += [{**base, sweep.name: value} for value in sweep.values()]
    return out


def render(path: Path, out: Path, model: Model, knobs: list[tuple[str, float]],
           sweeps: list[Sweep], png: Path | None = None, bpm: float = 120.0,
           temperature: float = 0.0, seed: int = 0,
           targets: list[tuple[str, float]] = (), morph: Path | None = None) -> list[dict]:
    """Write OUT.mid (input phrase, then each variation, L steps each); returns a summary.

    ``targets`` (attribute, value in its unit) are resolved along their axes after the knob
    offsets, as the live value knobs are. ``morph``: a second phrase (slot B); a ``morph``
    setting (0..1) moves the first phrase's unregularised dims towards it.
    """
    info = model.info
    tokens, shift = phrase_of_file(path, model)
    mu, _ = model.encode(tokens[None])
    settings = settings_list(knobs, sweeps)
    destination = model.encode(phrase_of_file(morph, model)[0][None])[0][0] if morph else None
    if destination is None and any("morph" in offsets for offsets in settings):
        raise RenderError("a morph setting needs --morph B.mid (the phrase to morph towards)")
    unknown = sorted({name for name, _ in targets} - set(info.axes))
    if unknown:
        raise RenderError(f"the model has no regularised attribute {unknown[0]!r} "
                          f"(it has: {', '.join(info.axes) or 'none'})")
    reaches = []
    try:
        rows = []
        for offsets in settings:
            moves = {k: v for k, v in offsets.items() if k != "morph"}
            z = offset_latent(mu[0], moves, info)
            amount = float(np.clip(offsets.get("morph", 0.0), 0, 1))
            if destination is not None and amount > 0:  # as the live morph knob does
                held = [n for n in HELD_BY_MORPH if n in info.axes and n not in dict(targets)]
                values = values_of(model, info, z, held)
                morphed = offset_latent(morph_latent(mu[0], destination, amount, info), moves,
                                        info)
                z = hold_values(model, info, morphed, values)
            z, landed = resolve_targets(model, info, z, dict(targets), 12 * shift)
            rows.append(z)
            reaches.append(landed)
        z = np.stack(rows)
    except ModelError as error:
        raise RenderError(str(error)) from None
    variations = model.decode_tokens(z, temperature, np.random.default_rng(seed))
    segments = [unfold_notes(tokens_to_notes(t, info.vocab), shift)
                for t in [tokens, *variations]]
    length = info.grid.seq_len
    timeline = [Note(n.onset + i * length, n.length, n.pitch)
                for i, notes in enumerate(segments) for n in notes]
    write_notes(out, timeline, info.grid, bpm)
    if png is not None:
        write_roll(png, segments, length, info.grid.steps_per_beat, info.grid.beats_per_bar)
    return [{"offsets": {}, "notes": len(segments[0])}] + [
        {"offsets": offsets, "notes": len(notes),
         "targets": {name: {"value": r.value, "reached": r.reached} for name, r in
                     landed.items()}}
        for offsets, notes, landed in zip(settings, segments[1:], reaches, strict=True)]
