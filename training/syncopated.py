"""A folder of syncopated tunes the project writes itself: the rhythm probe for fine-tuning.

    python -m glsr_train.syncopated DIR --tunes 50 --seed 0

The four training collections are folk and chorale rhythm: onsets on the beat and the eighth.
These tunes are built from the figures of dance and pop hooks (tresillo 3+3+2, the dembow
3+1+2+2, off-beat eighths, anticipations tied over the bar line, funk sixteenths), with
pitches walking a pentatonic or modal scale; each tune states a two-bar motif and varies it
over eight bars (A A' B A''), as a hook does. Nothing here comes from music21's corpus, so a
fine-tune on one seed's folder can be measured on another's (``--seed``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from glsr_live.midifile import write_notes
from glsr_live.tokens import Grid, Note

STEPS_PER_BAR = 16
# One bar's onsets (16ths); a figure that ends on step 14 or 15 may be tied over the bar line
FIGURES = {
    "tresillo": [0, 3, 6, 8, 11, 14],
    "dembow": [0, 3, 4, 6, 8, 11, 12, 14],
    "offbeat eighths": [2, 6, 10, 14],
    "anticipated": [0, 3, 6, 10, 14],
    "funk": [0, 3, 6, 7, 10, 13],
    "charleston": [0, 6, 8, 14],
    "push": [0, 2, 5, 7, 10, 12, 15],
    "son clave": [0, 3, 6, 10, 12],
    "backbeat hook": [2, 4, 7, 10, 11, 14],
    "sixteenths": [0, 1, 3, 4, 6, 9, 11, 12, 14],
}
SCALES = {
    "major pentatonic": [0, 2, 4, 7, 9],
    "minor pentatonic": [0, 3, 5, 7, 10],
    "dorian": [0, 2, 3, 5, 7, 9, 10],
    "mixolydian": [0, 2, 4, 5, 7, 9, 10],
    "aeolian": [0, 2, 3, 5, 7, 8, 10],
}


def scale_pitches(tonic: int, intervals: list[int], low: int = 52, high: int = 84) -> list[int]:
    return [p for p in range(low, high + 1) if (p - tonic) % 12 in intervals]


def bar_onsets(rng: np.random.Generator, figure: list[int]) -> list[int]:
    """A figure with one onset sometimes dropped or pushed a 16th early: hooks breathe."""
    onsets = list(figure)
    if len(onsets) > 4 and rng.random() < 0.3:
        onsets.pop(int(rng.integers(1, len(onsets))))
    if rng.random() < 0.3:
        at = int(rng.integers(1, len(onsets)))
        if onsets[at] - 1 > onsets[at - 1]:
            onsets[at] -= 1
    return onsets


def motif(rng: np.random.Generator, figures: list[list[int]], scale: list[int],
          start: int) -> list[tuple[int, int, int]]:
    """(onset, length, scale index) of a two-bar motif: each note held to the next onset or cut
    short (a staccato 16th or eighth), the last one sometimes tied over the bar line."""
    onsets = [bar * STEPS_PER_BAR + step for bar, figure in enumerate(figures)
              for step in bar_onsets(rng, figure)]
    notes, degree = [], start
    for index, onset in enumerate(onsets):
        following = onsets[index + 1] if index + 1 < len(onsets) else 2 * STEPS_PER_BAR
        gap = following - onset
        length = gap if rng.random() < 0.6 else int(min(gap, rng.choice([1, 2])))
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3]), 0,
                             len(scale) - 1))
        notes.append((onset, length, degree))
    return notes


def varied(rng: np.random.Generator, notes: list[tuple[int, int, int]], top: int,
           shift: int = 0) -> list[tuple[int, int, int]]:
    """The motif with a few pitches moved by a scale step, or all moved by ``shift`` steps."""
    out = []
    for onset, length, degree in notes:
        step = shift + (int(rng.choice([-1, 1])) if rng.random() < 0.25 else 0)
        out.append((onset, length, int(np.clip(degree + step, 0, top))))
    return out


def tune(rng: np.random.Generator) -> list[Note]:
    """Eight bars: A A' B A'' of two-bar motifs."""
    names = list(FIGURES)
    tonic = int(rng.integers(55, 67))
    scale = scale_pitches(tonic, SCALES[str(rng.choice(list(SCALES)))])
    top = len(scale) - 1
    home = int(np.searchsorted(scale, tonic + 7))
    a = motif(rng, [FIGURES[str(rng.choice(names))] for _ in range(2)], scale, home)
    b = motif(rng, [FIGURES[str(rng.choice(names))] for _ in range(2)], scale, home + 2)
    parts = [a, varied(rng, a, top), b, varied(rng, a, top, shift=int(rng.choice([-1, 1])))]
    notes = []
    for part, motif_notes in enumerate(parts):
        for onset, length, degree in motif_notes:
            notes.append(Note(part * 2 * STEPS_PER_BAR + onset, length, scale[degree]))
    return notes


def write_folder(folder: Path, tunes: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(tunes):
        path = folder / f"hook-{seed}-{index:03d}.mid"
        write_notes(path, tune(rng), Grid(), bpm=float(rng.integers(92, 126)))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glsr_train.syncopated",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--tunes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = write_folder(args.folder, args.tunes, args.seed)
    print(f"wrote {len(paths)} eight-bar syncopated tunes to {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
