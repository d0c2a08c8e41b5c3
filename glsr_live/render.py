"""glsr-live render: the offline twin of the daemon, MIDI file in, variations out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import mido
import numpy as np

from .axis import landed_as_played
from .capture import top_voice
from .compose import Setting, Source, compose
from .engine import DEFAULT_FIDELITY
from .groove import Groove
from .midifile import beat_notes_to_grid, open_midi, read_notes, write_played
from .model import Model, ModelError, PhraseKeeper, refined_code
from .pianoroll import write_roll
from .tokens import Note, fit_notes, notes_to_tokens, tokens_to_notes, unfold_notes
from .units import format_value, parse_note_name


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


@dataclass(frozen=True)
class FilePhrase:
    """The first L steps of a MIDI file: tokens (octave-fitted), the shift, how it was played
    (``groove``) and the file's tempo."""

    tokens: np.ndarray
    shift: int
    groove: Groove
    bpm: float


def phrase_of_file(path: Path, model: Model, track: str | None = None) -> FilePhrase:
    """The phrase of a MIDI file's first L steps (monophonic: the top voice)."""
    grid = model.info.grid
    played = [n for n in read_notes(path, track)
              if 0 <= round(n.start * grid.steps_per_beat) < grid.seq_len]
    notes = [n for n in beat_notes_to_grid(played, grid) if n.onset < grid.seq_len]
    if not notes:
        raise RenderError(f"{path}: no notes in its first {grid.seq_len} steps")
    fitted, shift = fit_notes(notes, model.info.vocab)
    feel = [(round(n.start * grid.steps_per_beat), n.velocity,
             n.start * grid.steps_per_beat - round(n.start * grid.steps_per_beat))
            for n in played]
    return FilePhrase(notes_to_tokens(fitted, model.info.vocab, grid.seq_len), shift,
                      Groove.of_notes(grid.seq_len, top_voice(feel), grid.steps_per_beat),
                      file_bpm(path))


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
           sweeps: list[Sweep], png: Path | None = None, bpm: float | None = None,
           temperature: float = 0.0, seed: int = 0,
           targets: list[tuple[str, float]] = (), morph: Path | None = None,
           fidelity: float = DEFAULT_FIDELITY, quantise: bool = False) -> list[dict]:
    """Write OUT.mid (input phrase, then each variation, L steps each); returns a summary.

    ``targets`` (attribute, value in its unit) are resolved along their axes after the knob
    offsets, as the live value knobs are. ``morph``: a second phrase (slot B); a ``morph``
    setting (0..1) moves the first phrase's unregularised dims towards it. As live, a setting
    with every knob at its centre plays the phrase itself, and decodes keep the phrase's notes
    by the ``fidelity`` bonus; notes keep the velocity and timing they were played with (new
    ones take their place in the beat's), at the file's tempo unless ``bpm`` is given.
    """
    info = model.info
    phrase = phrase_of_file(path, model)
    tokens, shift = phrase.tokens, phrase.shift
    mu, logvar = model.encode(tokens[None])
    editor = PhraseKeeper(model, tokens, fidelity)
    settings = settings_list(knobs, sweeps)
    destination = model.encode(phrase_of_file(morph, model).tokens[None])[0][0] \
        if morph else None
    if destination is None and any("morph" in offsets for offsets in settings):
        raise RenderError("a morph setting needs --morph B.mid (the phrase to morph towards)")
    unknown = sorted({name for name, _ in targets} - set(info.axes))
    if unknown:
        raise RenderError(f"the model has no regularised attribute {unknown[0]!r} "
                          f"(it has: {', '.join(info.axes) or 'none'})")
    rng = np.random.default_rng(seed)
    code = refined_code(model, tokens, mu[0], logvar[0])  # as live, a bar in
    source = Source(code, tokens, destination,
                    rng.standard_normal(info.latent_dim).astype(np.float32), 12 * shift)
    try:
        decoded = [variation_tokens(editor, source, offsets, dict(targets), temperature, rng)
                   for offsets in settings]
    except ModelError as error:
        raise RenderError(str(error)) from None
    groove = phrase.groove.quantised() if quantise else phrase.groove
    segments = [played_notes(t, info, shift, groove) for t in [tokens, *(d[0] for d in decoded)]]
    tempo = bpm or phrase.bpm
    length = info.grid.seq_len
    write_played(out, [(start + i * length, end + i * length, pitch, velocity)
                       for i, notes in enumerate(segments)
                       for start, end, pitch, velocity in notes], info.grid, tempo)
    if png is not None:
        labels = ["your phrase"] + [panel_label(offsets, dict(targets), kept_of(tokens, t[0]))
                                    for offsets, t in zip(settings, decoded, strict=True)]
        write_roll(png, [[Note(round(a), max(1, round(b) - round(a)), p) for a, b, p, _ in n]
                         for n in segments], length, info.grid.steps_per_beat,
                   info.grid.beats_per_bar, labels)
    return [{"offsets": {}, "notes": len(segments[0]), "bpm": tempo}] + [
        {"offsets": offsets, "notes": len(notes), "kept": kept_of(tokens, variation),
         "targets": {name: {"value": r.value, "reached": r.reached} for name, r in
                     landed.items()}}
        for offsets, notes, (variation, landed) in zip(settings, segments[1:], decoded,
                                                       strict=True)]


def panel_label(offsets: dict[str, float], targets: dict[str, float], kept: list[int]) -> str:
    """A variation's caption: its knob settings and how much of the phrase it keeps."""
    moves = [f"{name} {value:+.2f}" for name, value in offsets.items()]
    moves += [f"{name} → {format_value(name, value)}" for name, value in targets.items()]
    return f"{', '.join(moves) or 'knobs at rest'}  ({kept[0]} of {kept[1]} kept)"


def variation_tokens(editor: PhraseKeeper, source: Source, offsets: dict[str, float],
                     targets: dict[str, float], temperature: float, rng: np.random.Generator
                     ) -> tuple[np.ndarray, dict]:
    """The tokens one setting plays and where its value targets landed (as live: the phrase
    itself with every knob at its centre, else ``compose``'s code decoded)."""
    info = editor.info
    setting = Setting({k: v for k, v in offsets.items() if k not in ("morph", "prior")},
                      dict(targets),
                      float(np.clip(offsets.get("morph", 0.0), 0, 1))
                      if source.destination is not None else 0.0,
                      float(np.clip(offsets.get("prior", 0.0), 0, 1)))
    if not setting.moves_the_code() and temperature == 0:
        return editor.tokens, {}
    if setting.offsets_only():
        editor = replace(editor, origin=source.code)
    z, landed = compose(editor, source, setting, info)
    if "notes" in targets:
        editor = editor.exactly(targets["notes"])
    tokens = editor.decode_tokens(z[None], temperature, rng)[0]
    return tokens, landed_as_played(landed, tokens, info, targets)


def played_notes(tokens: np.ndarray, info, shift: int, groove: Groove
                 ) -> list[tuple[float, float, int, int]]:
    """(start, end in steps, pitch, velocity) of a variation, with the player's feel: a note
    ends where the next one starts when they touch (legato stays legato)."""
    notes = unfold_notes(tokens_to_notes(tokens, info.vocab), shift)
    onset = np.zeros(len(tokens), dtype=bool)
    onset[[n.onset for n in notes]] = True
    velocity, offset = groove.feel(onset)
    starts = {n.onset: n.onset + offset[n.onset] for n in notes}
    return [(starts[n.onset], starts.get(n.end, n.end), n.pitch, int(velocity[n.onset]))
            for n in notes]


def kept_of(phrase: np.ndarray, variation: np.ndarray) -> list[int]:
    """[notes of the phrase the variation plays as they were (step and pitch), notes]."""
    wanted = {(t, int(k)) for t, k in enumerate(phrase) if k >= 2}
    heard = {(t, int(k)) for t, k in enumerate(variation) if k >= 2}
    return [len(wanted & heard), len(wanted)]


def file_bpm(path: Path) -> float:
    """The tempo of a MIDI file's first tempo event (120 if it has none)."""
    for message in open_midi(path):
        if message.type == "set_tempo":
            return round(mido.tempo2bpm(message.tempo), 3)
    return 120.0
