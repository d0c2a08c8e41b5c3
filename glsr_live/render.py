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
from .midifile import beat_notes_to_grid, open_midi, read_metre, read_notes, write_played
from .model import Model, ModelError, PhraseKeeper, refined_code
from .pianoroll import write_roll
from .tokens import (
    HOLD,
    METRE_BAR_STEPS,
    METRE_BEATS,
    Note,
    fit_notes,
    fold_pitch,
    notes_to_tokens,
    tokens_to_notes,
    unfold_notes,
)
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


def parse_bars(text: str | None) -> tuple[int, int] | None:
    """'A:B' -> (A, B), bars counted from 1, B included."""
    if text is None:
        return None
    first, sep, last = text.partition(":")
    try:
        bars = (int(first), int(last))
        if not sep or not 1 <= bars[0] <= bars[1]:
            raise ValueError
    except ValueError:
        raise RenderError(f"--bars wants A:B, bars counted from 1, e.g. 3:4; got {text!r}"
                          ) from None
    return bars


def number_or_note(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float(parse_note_name(value))


@dataclass(frozen=True)
class FilePhrase:
    """L steps of a MIDI file: tokens (octave-fitted), the shift, how it was played
    (``groove``) and the file's tempo."""

    tokens: np.ndarray
    shift: int
    groove: Groove
    bpm: float


@dataclass(frozen=True)
class FileTune:
    """A MIDI file cut into phrases of L steps from its first beat (or from ``first_bar``),
    one octave shift for all; ``dropped``: notes of those bars no phrase plays (a chord's
    lower voices, notes under a longer higher one)."""

    phrases: list[FilePhrase]
    dropped: int
    first_bar: int = 1


def phrase_of_file(path: Path, model: Model, track: str | None = None) -> FilePhrase:
    """The phrase of a MIDI file's first L steps (monophonic: the top voice)."""
    return tune_of_file(path, model, track, bars=None, whole=False).phrases[0]


def file_metre(path: Path, model: Model, metre: str | None = None) -> str:
    """The metre a file is read in: ``metre`` if given, else its time signature, else the
    model's; a RenderError (one line) if the model does not play it."""
    metre = metre or read_metre(path) or model.info.metres[0]
    if not model.info.plays_metre(metre):
        known = ", ".join(METRE_BAR_STEPS)
        raise RenderError(f"{path} is in {metre} and the model {model.directory.name} plays "
                          f"{model.info.metre}: give --model (glsr-live models shows each "
                          f"model's metre), or --metre to read it in another ({known})")
    return metre


def tune_of_file(path: Path, model: Model, track: str | None = None,
                 bars: tuple[int, int] | None = None, whole: bool = True,
                 metre: str | None = None) -> FileTune:
    """The file's phrases: every L steps of it (``whole``), of bars A..B (1-based, inclusive,
    bars of ``metre``, else the grid's), or the first L steps alone. A last phrase shorter
    than L is padded with rests."""
    grid = model.info.grid
    bar_steps = METRE_BAR_STEPS[metre] if metre else grid.steps_per_bar
    notes = read_notes(path, track)
    start = (bars[0] - 1) * bar_steps if bars else 0
    if bars:
        stop = bars[1] * bar_steps
    elif whole:
        stop = max((round(n.start * grid.steps_per_beat) for n in notes), default=-1) + 1
    else:
        stop = grid.seq_len
    stop = start + max(1, -(-(stop - start) // grid.seq_len)) * grid.seq_len
    played = [n for n in notes if start <= round(n.start * grid.steps_per_beat) < stop]
    if not played:
        where = f"bars {bars[0]}-{bars[1]}" if bars else f"its first {grid.seq_len} steps"
        raise RenderError(f"{path}: no notes in {where}")
    shift = fit_notes(beat_notes_to_grid(played, grid), model.info.vocab)[1]
    bpm = file_bpm(path)
    phrases, dropped = [], 0
    for begin in range(start, stop, grid.seq_len):
        inside = [n for n in played
                  if begin <= round(n.start * grid.steps_per_beat) < begin + grid.seq_len]
        phrase, lost = file_phrase(inside, begin, shift, model, bpm)
        phrases.append(phrase)
        dropped += lost
    return FileTune(phrases, dropped, start // bar_steps + 1)


def file_phrase(played: list, begin: int, shift: int, model: Model, bpm: float
                ) -> tuple[FilePhrase, int]:
    """The phrase of the notes ``played`` from step ``begin``, and how many of them it drops."""
    grid, vocab = model.info.grid, model.info.vocab
    offset = begin / grid.steps_per_beat
    notes = [n for n in beat_notes_to_grid(played, grid, offset) if n.onset < grid.seq_len]
    fitted = [Note(n.onset, n.length, fold_pitch(n.pitch + 12 * shift, vocab.low, vocab.high))
              for n in notes]
    tokens = notes_to_tokens(fitted, vocab, grid.seq_len)
    kept = {(step, int(token)) for step, token in enumerate(tokens) if token > HOLD}
    dropped = sum((n.onset, vocab.token(n.pitch)) not in kept for n in fitted)
    feel = [(round((n.start - offset) * grid.steps_per_beat), n.velocity,
             n.start * grid.steps_per_beat - round(n.start * grid.steps_per_beat))
            for n in played]
    groove = Groove.of_notes(grid.seq_len, top_voice(feel), grid.steps_per_beat)
    return FilePhrase(tokens, shift, groove, bpm), dropped


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
           fidelity: float = DEFAULT_FIDELITY, quantise: bool = False,
           bars: tuple[int, int] | None = None, metre: str | None = None) -> list[dict]:
    """Write OUT.mid: the tune (every phrase of the file, or of ``bars``), then the tune
    varied by each setting, phrase by phrase; returns a summary, one entry per part.

    ``targets`` (attribute, value in its unit) are resolved along their axes after the knob
    offsets, as the live value knobs are. ``morph``: a second phrase (slot B); a ``morph``
    setting (0..1) moves each phrase's unregularised dims towards it. As live, a setting with
    every knob at its centre plays the phrase itself, and decodes keep the phrase's notes by
    the ``fidelity`` bonus; notes keep the velocity and timing they were played with (new
    ones take their place in the beat's), at the file's tempo unless ``bpm`` is given, in the
    file's metre (its time signature, unless ``metre`` is given).
    """
    info = model.info
    metre = file_metre(path, model, metre)
    tune = tune_of_file(path, model, bars=bars, metre=metre)
    settings = settings_list(knobs, sweeps)
    destination = model.encode(phrase_of_file(morph, model).tokens[None])[0][0] \
        if morph else None
    check_request(info, settings, targets, destination)
    rng = np.random.default_rng(seed)
    prior = rng.standard_normal(info.latent_dim).astype(np.float32)
    try:
        varied = [vary_phrase(model, phrase, settings, dict(targets), destination, prior,
                              fidelity, temperature, rng) for phrase in tune.phrases]
    except ModelError as error:
        raise RenderError(str(error)) from None
    # parts: the tune, then each setting's variation of it; each a list of phrase tokens
    parts = [[p.tokens for p in tune.phrases]] + [
        [varied[k][index][0] for k in range(len(tune.phrases))] for index in range(len(settings))]
    segments = [[played_notes(tokens, info, phrase.shift, phrase.groove.quantised() if quantise
                              else phrase.groove)
                 for tokens, phrase in zip(part, tune.phrases, strict=True)] for part in parts]
    tempo = bpm or tune.phrases[0].bpm
    length = info.grid.seq_len
    flat = [notes for part in segments for notes in part]
    write_played(out, [(start + i * length, end + i * length, pitch, velocity)
                       for i, notes in enumerate(flat)
                       for start, end, pitch, velocity in notes], info.grid, tempo,
                 metre=metre)
    if png is not None:
        write_tune_roll(png, tune, parts, flat, settings, dict(targets), info, metre)
    return summary(tune, parts, settings, varied, tempo, metre, info.grid.seq_len)


def check_request(info, settings: list[dict], targets, destination) -> None:
    if destination is None and any("morph" in offsets for offsets in settings):
        raise RenderError("a morph setting needs --morph B.mid (the phrase to morph towards)")
    unknown = sorted({name for name, _ in targets} - set(info.axes))
    if unknown:
        raise RenderError(f"the model has no regularised attribute {unknown[0]!r} "
                          f"(it has: {', '.join(info.axes) or 'none'})")


def vary_phrase(model: Model, phrase: FilePhrase, settings: list[dict], targets: dict,
                destination, prior: np.ndarray, fidelity: float, temperature: float,
                rng: np.random.Generator) -> list[tuple[np.ndarray, dict]]:
    """(tokens, where the targets landed) of one phrase under each setting."""
    mu, logvar = model.encode(phrase.tokens[None])
    code = refined_code(model, phrase.tokens, mu[0], logvar[0])  # as live, a bar in
    source = Source(code, phrase.tokens, destination, prior, 12 * phrase.shift)
    editor = PhraseKeeper(model, phrase.tokens, fidelity)
    return [variation_tokens(editor, source, offsets, targets, temperature, rng)
            for offsets in settings]


def summary(tune: FileTune, parts: list[list[np.ndarray]], settings: list[dict],
            varied: list[list[tuple[np.ndarray, dict]]], tempo: float, metre: str,
            seq_len: int) -> list[dict]:
    """One entry per part: its notes, and for each variation the phrase's notes it keeps and
    where its targets landed (in the tune's first phrase)."""
    notes = [sum(int((t > HOLD).sum()) for t in part) for part in parts]
    head = {"offsets": {}, "notes": notes[0], "bpm": tempo, "phrases": len(tune.phrases),
            "first_bar": tune.first_bar, "dropped": tune.dropped, "metre": metre,
            "bars_per_phrase": seq_len // METRE_BAR_STEPS[metre]}
    rows = []
    for index, offsets in enumerate(settings):
        kept = [kept_of(p.tokens, t) for p, t in zip(tune.phrases, parts[index + 1],
                                                     strict=True)]
        landed = varied[0][index][1]
        rows.append({"offsets": offsets, "notes": notes[index + 1],
                     "kept": [sum(k[0] for k in kept), sum(k[1] for k in kept)],
                     "targets": {name: {"value": r.value, "reached": r.reached}
                                 for name, r in landed.items()}})
    return [head] + rows


def write_tune_roll(png: Path, tune: FileTune, parts: list[list[np.ndarray]],
                    flat: list[list[tuple]], settings: list[dict], targets: dict, info,
                    metre: str) -> None:
    """A panel per phrase of each part (bar numbers: the output file's, bars and beats of
    ``metre``), captioned with its setting and, for a tune of several phrases, the tune's bars
    it varies."""
    bars_per_phrase = info.grid.seq_len // METRE_BAR_STEPS[metre]
    labels = []
    for index, part in enumerate(parts):
        for k, tokens in enumerate(part):
            first = tune.first_bar + k * bars_per_phrase
            where = f", tune bars {first}-{first + bars_per_phrase - 1}" \
                if len(part) > 1 else ""
            caption = "your phrase" if index == 0 else panel_label(
                settings[index - 1], targets, kept_of(tune.phrases[k].tokens, tokens))
            labels.append(caption + where)
    write_roll(png, [[Note(round(a), max(1, round(b) - round(a)), p) for a, b, p, _ in n]
                     for n in flat], info.grid.seq_len, *METRE_BEATS[metre], labels,
               originals=len(tune.phrases))


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
