"""glsr-live: run | ports | learn | render | bench | models."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import supervise
from .catalog import (
    DEFAULT_MODEL,
    installed_models,
    model_for_metre,
    model_line,
    presets_root,
    resolve_model,
    resolve_preset,
)
from .errors import MidiFileError, ModelError
from .tokens import METRE_BAR_STEPS

EXIT_USAGE = 2
METRES = tuple(METRE_BAR_STEPS)  # the metres a phrase can be two bars of
EXIT_FAILURE = 1


def model_directory(args: argparse.Namespace, metre: str | None = None) -> Path:
    """The --model given, else the default model for ``metre`` (or --metre)."""
    if args.model:
        return resolve_model(args.model[0])
    return model_for_metre(metre or getattr(args, "metre", None))


def model_directories(args: argparse.Namespace) -> list[Path]:
    if not args.model:
        return [model_directory(args)]
    return [resolve_model(spec) for spec in args.model]


# ---------------------------------------------------------------- arguments


def add_api(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", default="auto",
                        choices=["auto", "alsa", "jack", "coremidi", "winmm"],
                        help="MIDI system (auto: ALSA on Linux, CoreMIDI on macOS, WinMM)")


def add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=None, metavar="NAME|DIR",
                        help=f"an installed model's name (see 'glsr-live models') or a model "
                             f"directory (default: {DEFAULT_MODEL}); run takes several, "
                             "Program Change n switches to the n-th at the next bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glsr-live", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="the live instrument")
    add_model(run)
    add_api(run)
    run.add_argument("--preset", default=None, metavar="NAME|TOML",
                     help="knob preset: an installed one's name (default, units) or a TOML file")
    run.add_argument("--in", dest="inport", help="input port (partial name) instead of virtual")
    run.add_argument("--out", dest="outport", help="output port (partial name)")
    run.add_argument("--virtual-in", default="glsr-live in", help="name of the virtual input")
    run.add_argument("--virtual-out", default="glsr-live out", help="name of the virtual output")
    run.add_argument("--bpm", type=float, default=120.0, help="internal clock tempo")
    run.add_argument("--clock", choices=["internal", "midi"], default="internal")
    run.add_argument("--metre", choices=METRES, default=None,
                     help="the phrases' time signature (default: the model's); without "
                          "--model, the installed model that plays it")
    run.add_argument("--channel", type=int, help="output channel 1-16 (overrides the preset)")
    run.add_argument("--quiet", action="store_true", help="no status line")
    run.add_argument("--record", type=Path, metavar="DIR",
                     help="record the session (in, out, knobs) as a MIDI file in DIR; the keep "
                          "button stores variations there too")
    run.add_argument("--seed", type=int, help="random seed (recorded; default: a fresh one)")

    ports = commands.add_parser("ports", help="list MIDI ports of every available API")
    ports.add_argument("--api", default=None, choices=["alsa", "jack", "coremidi", "winmm"])
    ports.add_argument("--json", action="store_true")

    learn = commands.add_parser("learn", help="map knobs by moving them")
    add_model(learn)
    add_api(learn)
    learn.add_argument("--preset", type=Path, required=True, help="preset TOML to write")
    learn.add_argument("--in", dest="inport", help="input port (partial name)")

    render = commands.add_parser("render", help="variations of a MIDI file, offline")
    render.add_argument("input", type=Path, nargs="?",
                        help="MIDI file; its first two bars are the phrase")
    render.add_argument("--replay", type=Path, metavar="SESSION.mid",
                        help="run a session recorded with 'run --record' through the engine "
                             "again and compare with what it played")
    render.add_argument("-o", "--output", type=Path, required=True, help="MIDI file to write")
    add_model(render)
    render.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                        help="an axis in spreads (notes=1.5), or prior=0..1")
    render.add_argument("--sweep", action="append", default=[], metavar="NAME=FROM:TO:STEPS")
    render.add_argument("--target", action="append", default=[], metavar="NAME=VALUE",
                        help="an attribute value in its unit (notes=6, register=G4), found "
                             "along the attribute's axis as a value knob does")
    render.add_argument("--morph", type=Path, metavar="B.mid",
                        help="a second phrase to morph towards: --sweep morph=0:1:9")
    render.add_argument("--png", type=Path, help="piano roll to write")
    render.add_argument("--bpm", type=float, default=None,
                        help="tempo of the output (default: the input file's)")
    render.add_argument("--temperature", type=float, default=0.0)
    render.add_argument("--fidelity", type=float, default=None, metavar="NATS",
                        help="how strongly a variation keeps the phrase's notes (0: the "
                             "model's own decode; default 8, the most)")
    render.add_argument("--quantise", action="store_true",
                        help="play on the grid (default: with the timing the phrase was played)")
    render.add_argument("--bars", metavar="A:B",
                        help="vary bars A to B of the file (default: the whole file, phrase "
                             "by phrase)")
    render.add_argument("--metre", choices=METRES, default=None,
                        help="read the file in this metre (default: its time signature, else "
                             "the model's); without --model, the model that plays it")

    models = commands.add_parser("models", help="list the installed models")
    models.add_argument("--json", action="store_true")

    bench = commands.add_parser("bench", help="latency of the engine on this machine")
    add_model(bench)
    bench.add_argument("--events", type=int, default=2000, help="knob moves to time")
    bench.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                       help="run phrases and 1 kHz CC changes this long, report per minute")
    bench.add_argument("--json", action="store_true")
    return parser


# ---------------------------------------------------------------- commands


def cmd_ports(args: argparse.Namespace) -> int:
    from .ports import compiled_apis, list_ports

    listing = list_ports([args.api] if args.api else compiled_apis())
    if args.json:
        print(json.dumps(listing))
        return 0
    for api, ports in listing.items():
        if "error" in ports:
            print(f"{api}: {ports['error']}")
            continue
        print(f"{api} inputs:  " + (", ".join(ports["inputs"]) or "none"))
        print(f"{api} outputs: " + (", ".join(ports["outputs"]) or "none"))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import replay_file

    models = model_directories(args) if args.model else None
    result = replay_file(args.replay, args.output, models)
    if "cut_short_at" in result:
        print(f"the recording was cut short at {result['cut_short_at']:.1f} s (no end mark: the "
              "daemon was killed?); comparing the notes that had ended by then")
    print(f"replayed {args.replay} into {args.output}: {result['replayed']} notes, recorded "
          f"{result['recorded']}; on the grid {result['only_recorded']} only recorded, "
          f"{result['only_replayed']} only replayed"
          + (" (identical)" if result["identical"] else ""))
    return 0 if result["identical"] else EXIT_FAILURE


def cmd_render(args: argparse.Namespace) -> int:
    if args.replay is not None:
        return cmd_replay(args)
    if args.input is None:
        raise ValueError("render needs a MIDI file (or --replay SESSION.mid)")
    from .midifile import read_metre
    from .model import Model
    from .render import parse_bars, parse_knob_setting, parse_sweep, parse_target, render
    from .units import format_value

    knobs = [parse_knob_setting(k) for k in args.knob]
    targets = [parse_target(t) for t in args.target]
    sweeps = [parse_sweep(s) for s in args.sweep]
    metre = args.metre or read_metre(args.input)  # the file's, read once
    model = Model(model_directory(args, metre))
    from .engine import DEFAULT_FIDELITY

    fidelity = DEFAULT_FIDELITY if args.fidelity is None else args.fidelity
    if not 0 <= fidelity <= 20:
        raise ValueError(f"--fidelity must be 0..20 nats, got {fidelity:g}")
    summary = render(args.input, args.output, model, knobs, sweeps, args.png, args.bpm,
                     args.temperature, targets=targets, morph=args.morph, fidelity=fidelity,
                     quantise=args.quantise, bars=parse_bars(args.bars), metre=metre)
    head = summary[0]
    if head["dropped"]:
        print(f"warning: {head['dropped']} note(s) of the file not played: a phrase plays its "
              "top voice (a chord's lower notes, notes under a longer higher one)")
    bars = head["phrases"] * head["bars_per_phrase"]
    for index, item in enumerate(summary):
        label = ("input" if head["phrases"] == 1 else
                 f"input, bars {head['first_bar']}-{head['first_bar'] + bars - 1} of the file"
                 ) if index == 0 else ", ".join(
            f"{k}={v:+.2f}" for k, v in item["offsets"].items()) or (
            "the phrase's code" if item.get("targets") else "the phrase (knobs at rest)")
        if "kept" in item:
            label += f" ({item['kept'][0]} of the input's {item['kept'][1]} notes kept)"
        for name, landed in item.get("targets", {}).items():
            wanted = format_value(name, dict(targets)[name])
            label += (f", {name} {wanted} → {format_value(name, landed['value'])}"
                      + ("" if landed["reached"] else " (out of reach)"))
        print(f"bars {bars * index + 1}-{bars * index + bars}: {label}: {item['notes']} notes")
    print(f"wrote {args.output} in {head['metre']} at {head['bpm']:g} BPM with the model "
          f"{model.directory.name}"
          + (f" and {args.png}" if args.png else ""))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .live import run_live

    code = run_live(args, model_directories(args), resolve_preset(args.preset))
    # Every note is off and the ports are closed; JACK's native threads can still stall the
    # interpreter's teardown (seen as a daemon that outlives SIGTERM), so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_learn(args: argparse.Namespace) -> int:
    from .live import run_learn

    return run_learn(args, model_directory(args))


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return run_bench(args, model_directory(args))


def cmd_models(args: argparse.Namespace) -> int:
    models = installed_models()
    if args.json:
        print(json.dumps({name: str(path) for name, path in models.items()}))
        return 0
    if not models:
        print(f"no models installed under {presets_root() / 'models'}")
        return EXIT_FAILURE
    for name, path in models.items():
        print(model_line(name, path) + ("  (default)" if name == DEFAULT_MODEL else ""))
    return 0


COMMANDS = {"run": cmd_run, "ports": cmd_ports, "learn": cmd_learn, "render": cmd_render,
            "bench": cmd_bench, "models": cmd_models}


def user_errors() -> tuple[type[Exception], ...]:
    from .knobs import PresetError
    from .ports import PortError
    from .render import RenderError

    return (ModelError, MidiFileError, PresetError, PortError, RenderError, ValueError, OSError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run" and supervise.wanted():
        return supervise.supervise(sys.argv[1:] if argv is None else argv)
    if args.command == "run":
        supervise.follow_parent()
        supervise.silence_native_stderr()
        supervise.enable_stack_dumps()
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except user_errors() as error:
        print(f"glsr-live {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # a bug: one line, the traceback only when asked for
        if os.environ.get("GLSR_LIVE_DEBUG"):
            raise
        print(f"glsr-live {args.command}: internal error: {type(error).__name__}: {error} "
              "(set GLSR_LIVE_DEBUG=1 for details)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
