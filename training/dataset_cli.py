"""glsr-dataset: build (or load) the dataset and print its summary."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from glsr_live.midifile import MidiFileError

from .corpus import CorpusError
from .dataset import DEFAULT_CACHE, DatasetSettings, build, summary

EXIT_USAGE = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glsr-dataset", description=__doc__)
    parser.add_argument("--corpus", default="bach", help="'bach' or a MIDI/MusicXML file or folder")
    parser.add_argument("--track", help="name of the melody track/part in user files")
    parser.add_argument("--seq-len", type=int, default=32, help="steps per window (16ths)")
    parser.add_argument("--stride", type=int, default=4, help="steps between window starts")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def print_summary(info: dict, seconds: float) -> None:
    windows = info["windows"]
    print(f"corpus      {info['corpus']} ({'cached' if info['from_cache'] else 'parsed'} "
          f"in {seconds:.1f} s)")
    print(f"pieces      {info['pieces']} used, {info['skipped']} skipped; per split "
          + ", ".join(f"{k} {v}" for k, v in info["pieces_per_split"].items()))
    for piece, reason in list(info["skipped_reasons"].items())[:10]:
        print(f"  skipped   {piece}: {reason}")
    print("windows     " + ", ".join(f"{k} {v}" for k, v in windows.items())
          + f" (L={info['seq_len']}, stride {info['stride']})")
    print(f"vocabulary  {info['vocab']} tokens, pitches {info['pitch_range'][0]}"
          f"..{info['pitch_range'][1]}")
    for name, stats in info["attributes"].items():
        print(f"  {name:10s} min {stats['min']:6.2f}  p5 {stats['p5']:6.2f}  mean "
              f"{stats['mean']:6.2f}  p95 {stats['p95']:6.2f}  max {stats['max']:6.2f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seq_len < 1 or args.stride < 1:
        print("glsr-dataset: --seq-len and --stride must be positive", file=sys.stderr)
        return EXIT_USAGE
    settings = DatasetSettings(corpus=args.corpus, seq_len=args.seq_len, stride=args.stride,
                               track=args.track)
    started = time.perf_counter()
    try:
        dataset = build(settings, args.cache, progress=not (args.quiet or args.json))
    except (CorpusError, MidiFileError) as error:
        print(f"glsr-dataset: {error}", file=sys.stderr)
        return EXIT_USAGE
    info = summary(dataset)
    seconds = time.perf_counter() - started
    info["seconds"] = round(seconds, 2)
    if args.json:
        print(json.dumps(info))
    else:
        print_summary(info, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
