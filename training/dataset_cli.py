"""glsr-dataset: build (or load) the dataset and print its summary."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

from glsr_live.midifile import MidiFileError, write_notes

from . import config as config_module
from .corpus import NAMED_CORPORA, CorpusError, line_to_notes
from .dataset import (
    DEFAULT_CACHE,
    WINDOW_MODES,
    DatasetSettings,
    build,
    dataset_settings,
    summary,
)

EXIT_USAGE = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glsr-dataset", description=__doc__)
    parser.add_argument("--config", type=Path,
                        help="take [data] from this training TOML (the options below override)")
    parser.add_argument("--corpus", action="append",
                        help=f"{', '.join(NAMED_CORPORA)} or a MIDI/MusicXML/ABC file or folder; "
                             "repeat to mix (default: bach)")
    parser.add_argument("--track", help="name of the melody track/part in user files")
    parser.add_argument("--seq-len", type=int, help="steps per window (16ths; default 32)")
    parser.add_argument("--stride", type=int, help="steps between window starts (default 4)")
    parser.add_argument("--windows", choices=WINDOW_MODES,
                        help="'bars': windows start on bar lines only (default: stride)")
    parser.add_argument("--max-shift", type=int,
                        help="transpose at most this many semitones each way (default: all)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache folder")
    parser.add_argument("--export-midi", type=Path, metavar="DIR",
                        help="also write the melodies of --split as MIDI files to DIR")
    parser.add_argument("--split", choices=["train", "val", "test"], default="test",
                        help="the split --export-midi writes (default: test)")
    parser.add_argument("--limit", type=int, default=0,
                        help="--export-midi: at most this many melodies, whole families first")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def print_summary(info: dict, seconds: float) -> None:
    windows = info["windows"]
    print(f"corpus      {info['corpus']} ({'cached' if info['from_cache'] else 'parsed'} "
          f"in {seconds:.1f} s)")
    metres = f" (tunes in {', '.join(info['metres'])})" if info["metres"] else ""
    print(f"pieces      {info['pieces']} used{metres}, {info['skipped']} skipped; per split "
          + ", ".join(f"{k} {v}" for k, v in info["pieces_per_split"].items()))
    for piece, reason in list(info["skipped_reasons"].items())[:10]:
        print(f"  skipped   {piece}: {reason}")
    print("windows     " + ", ".join(f"{k} {v}" for k, v in windows.items())
          + f" (L={info['seq_len']}, starting {info['window_starts']})")
    for source, part in info["per_corpus"].items():
        print(f"  {source:10s} {part['pieces']} pieces in {part['families']} families, "
              f"{part['skipped']} skipped; windows "
              + ", ".join(f"{k} {v}" for k, v in part["windows"].items())
              + "; overlap with train " + ", ".join(
                  f"{k} {v:.3f}" for k, v in part["overlap_with_train"].items() if k != "train")
              + " (own train " + ", ".join(
                  f"{k} {v:.3f}" for k, v in part["overlap_with_own_train"].items()
                  if k != "train") + ")")
    print(f"vocabulary  {info['vocab']} tokens, pitches {info['pitch_range'][0]}"
          f"..{info['pitch_range'][1]}")
    for name, stats in info["attributes"].items():
        print(f"  {name:10s} min {stats['min']:6.2f}  p5 {stats['p5']:6.2f}  mean "
              f"{stats['mean']:6.2f}  p95 {stats['p95']:6.2f}  max {stats['max']:6.2f}")


def export_midi(dataset, split: str, folder: Path, limit: int) -> int:
    """Write the melodies of ``split`` as MIDI files (whole tune families, in family order, up
    to ``limit`` melodies), each in its time signature; returns how many."""
    pieces = sorted(dataset.pieces(split), key=lambda i: (dataset.families[i], i))
    pieces = pieces[:limit] if limit > 0 else pieces
    folder.mkdir(parents=True, exist_ok=True)
    for index in pieces:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset.names[index]).strip("_")[:80]
        write_notes(folder / f"{index:05d}-{stem}.mid", line_to_notes(dataset.lines[index]),
                    dataset.grid, text=dataset.names[index],
                    metre=dataset.metres[index] if re.fullmatch(r"\d+/\d+", dataset.metres[index])
                    else None)
    return len(pieces)


def settings_from(args: argparse.Namespace) -> DatasetSettings:
    """[data] of --config (or the defaults), overridden by the command line's options."""
    data = config_module.load(args.config).data if args.config else config_module.DataConfig()
    settings = dataset_settings(data)
    overrides = {"corpus": tuple(args.corpus) if args.corpus else None, "track": args.track,
                 "seq_len": args.seq_len, "stride": args.stride, "windows": args.windows,
                 "max_shift": args.max_shift}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if settings.seq_len < 1 or settings.stride < 1:
        raise CorpusError("--seq-len and --stride must be positive")
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        settings = settings_from(args)
        dataset = build(settings, args.cache, progress=not (args.quiet or args.json))
        info = summary(dataset)
        if args.export_midi:  # an unwritable folder is one line too
            info["exported"] = export_midi(dataset, args.split, args.export_midi, args.limit)
    except (CorpusError, MidiFileError, config_module.ConfigError, OSError) as error:
        print(f"glsr-dataset: {error}", file=sys.stderr)
        return EXIT_USAGE
    seconds = time.perf_counter() - started
    info["seconds"] = round(seconds, 2)
    if args.json:
        print(json.dumps(info))
        return 0
    print_summary(info, seconds)
    if args.export_midi:
        print(f"wrote {info['exported']} {args.split} melodies to {args.export_midi}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
