"""The live commands: ``run`` (the daemon) and ``learn`` (map knobs by moving them)."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import __version__
from .catalog import model_for_metre, model_metres
from .clock import InternalClock, MidiClock
from .daemon import Daemon, install_signal_handlers, raise_threads
from .engine import Engine
from .knobs import BUTTONS, CONTROLS, Knob, Preset, PresetError, dump_preset, load_preset
from .model import Model, ModelError
from .ports import PortError, PortKeeper, PortRequest, backend_for, open_port
from .record import SessionRecorder, session_path
from .status import status_line
from .tokens import plays

EXIT_OK = 0
EXIT_ENGINE_ERROR = 1
EXIT_MIDI_LOST = 3


def plain_notice(line: str) -> None:
    print(f"glsr-live: {line}", file=sys.stderr, flush=True)


class PlainLog:
    """Output that is not a terminal: one status line when the variation changes, at most one
    a second, and events as lines."""

    def __init__(self) -> None:
        self.variation, self.printed_at = None, -1.0

    def show(self, engine, now: float) -> None:
        if engine.variation is self.variation or now - self.printed_at < 1.0:
            return
        self.variation, self.printed_at = engine.variation, now
        print(f"glsr-live: {status_line(engine, now)}", file=sys.stderr, flush=True)

    def event(self, line: str) -> None:
        plain_notice(line)

    def stop(self) -> None:
        pass


def live_view(args: argparse.Namespace, model_name: str, metre: str):
    """The redrawn rich view on a terminal, a plain log elsewhere, None with --quiet."""
    if args.quiet:
        return None
    if not sys.stderr.isatty():
        return PlainLog()
    from .view import LiveView

    return LiveView(model_name, metre=metre)


def close_quietly(*ports, timeout: float = 2.0) -> bool:
    """Close ports whose MIDI system may be gone or stuck; False if closing did not finish.

    Closing a JACK client can block when the server is in trouble; by then every note is
    already off, so the caller may leave without waiting for it.
    """
    def close_all() -> None:
        for port in ports:
            try:
                port.close()
            except Exception:  # rtmidi raises when the server vanished; nothing left to close
                pass

    closer = threading.Thread(target=close_all, daemon=True)
    closer.start()
    closer.join(timeout)
    return not closer.is_alive()


def make_engine(models: list, preset: Preset, clock_kind: str, bpm: float, seed: int
                ) -> Engine:
    """The engine plays the first model; Program Change n picks model n (modulo their count).
    The seed makes a session reproducible (``glsr-live render --replay``)."""
    grid = models[0].info.grid
    clock = (MidiClock(grid.steps_per_beat) if clock_kind == "midi"
             else InternalClock(bpm, grid.steps_per_beat))
    return Engine(models[0], preset, clock, np.random.default_rng(seed), models=models)


def session_settings(args: argparse.Namespace, model_dirs: list[Path], preset: Preset,
                     seed: int, metre: str | None = None) -> dict:
    """What a replay needs to rebuild this engine: models, the preset itself, clock, seed;
    and the metre played, for the file's time signature."""
    return {"version": __version__, "models": [str(d.resolve()) for d in model_dirs],
            "preset_toml": dump_preset(preset), "clock": args.clock, "bpm": args.bpm,
            "seed": seed, **({"metre": metre} if metre else {})}


def with_channel(preset: Preset, channel: int | None) -> Preset:
    if channel is None:
        return preset
    if not 1 <= channel <= 16:
        raise PresetError(f"--channel must be 1..16, got {channel}")
    return replace(preset, options=replace(preset.options, channel=channel))


def check_metre(models: list[Model], model_dirs: list[Path], metre: str | None) -> None:
    """A ModelError (one line, exit 2) for a model whose phrases are not in ``metre``."""
    for model, directory in zip(models, model_dirs, strict=True):
        if metre is not None and not model.info.plays_metre(metre):
            other = model_for_metre(metre)
            hint = (f"--model {other.name} plays it" if plays(model_metres(other), metre)
                    else f"no installed model plays {metre}")
            raise ModelError(f"--metre {metre}: the model {directory.name} plays two bars of "
                             f"{model.info.metre}; {hint} (glsr-live models shows each "
                             "model's metre)")


def run_live(args: argparse.Namespace, model_dirs: list[Path], preset_path: Path) -> int:
    """Open models, preset and ports, then play until SIGINT/SIGTERM; notes always closed."""
    models = [Model(directory) for directory in model_dirs]
    check_metre(models, model_dirs, getattr(args, "metre", None))
    model, model_dir = models[0], model_dirs[0]
    axes = set().union(*(m.info.axes for m in models))
    preset = with_channel(load_preset(preset_path, axes), args.channel)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    try:
        engine = make_engine(models, preset, args.clock, args.bpm, seed)
    except ValueError as error:
        raise PresetError(str(error)) from None
    backend = backend_for(args.api)
    inport = PortKeeper(backend, PortRequest("input", args.inport, args.virtual_in), args.api)
    try:
        outport = PortKeeper(backend, PortRequest("output", args.outport, args.virtual_out),
                             args.api)
    except BaseException:
        inport.close()
        raise
    metre = getattr(args, "metre", None) or model.info.metres[0]
    recorder = None
    if args.record is not None:
        recorder = SessionRecorder(session_path(args.record),
                                   session_settings(args, model_dirs, preset, seed, metre),
                                   clock=time.perf_counter,
                                   bpm=args.bpm if args.clock == "internal" else 120.0)
    view = live_view(args, model_dir.name, metre)
    daemon = Daemon(engine, inport, outport,
                    show_status=view.show if view is not None else None,
                    notice=view.event if view is not None else plain_notice,
                    load_model=Model, recorder=recorder)
    install_signal_handlers(daemon)
    raise_threads()  # the loop and the MIDI threads rtmidi and libjack started for the ports
    others = "".join(f", Program Change {i} {d.name}" for i, d in enumerate(model_dirs) if i)
    print(f"glsr-live: model {model_dir.name} on {model.provider}{others}, in '{inport.name}', "
          f"out '{outport.name}' channel {preset.options.channel}, in {metre}, "
          f"{'MIDI clock' if args.clock == 'midi' else f'{args.bpm:g} BPM'}, seed {seed}"
          f"{f', recording to {recorder.path}' if recorder else ''}; Ctrl-C stops",
          file=sys.stderr, flush=True)
    code = EXIT_OK
    try:
        daemon.run()
        if view is not None:
            view.stop()
    except PortError as error:  # the MIDI system went away under us
        print(f"\nglsr-live run: {error}; exiting", file=sys.stderr)
        code = EXIT_MIDI_LOST
    except Exception as error:  # notes are already closed by run(); report in one line
        print(f"\nglsr-live run: engine error: {type(error).__name__}: {error}; all notes "
              "were closed", file=sys.stderr)
        code = EXIT_ENGINE_ERROR
    time.sleep(0.05)  # let the last note-offs leave before the ports go away
    if view is not None:
        view.stop()
    # with the MIDI system gone there is nothing to close cleanly: leave within 2 s
    if not close_quietly(inport, outport, timeout=0.2 if code == EXIT_MIDI_LOST else 2.0):
        sys.stderr.flush()
        os._exit(code)  # a stuck MIDI client must not keep a stopped daemon alive
    return code


# ---------------------------------------------------------------- learn


def ask_target(knob_cc: int, channel: int, targets: list[str], ask=input) -> str | None:
    """The user's answer for one knob: a target, or None for skip."""
    options = "/".join(targets)
    while True:
        answer = ask(f"CC {knob_cc} (channel {channel}) -> target [{options}/skip]: ").strip()
        if answer in ("", "skip"):
            return None
        if answer in targets:
            return answer
        print(f"  '{answer}' is not one of {options}")


def run_learn(args: argparse.Namespace, model_dir: Path) -> int:
    """Move a knob, name its target, repeat; Ctrl-C (or end of input) writes the preset."""
    info = Model(model_dir).info
    targets = list(info.axes) + list(CONTROLS)
    existing = (load_preset(args.preset, set(info.axes)) if args.preset.exists() else Preset())
    knobs = {(k.cc, k.channel): k for k in existing.knobs}
    backend = backend_for(args.api)
    inport = open_port(backend, PortRequest("input", args.inport, "glsr-live learn"), args.api)
    print("move a knob or press a button; Ctrl-C when done", file=sys.stderr)
    try:
        learn_knobs(inport, targets, knobs)
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        inport.close()
    preset = Preset(existing.options, tuple(knobs.values()))
    args.preset.write_text(dump_preset(preset))
    print(f"\nwrote {len(preset.knobs)} knob(s) to {args.preset}", file=sys.stderr)
    return EXIT_OK


def learn_knobs(inport, targets: list[str], knobs: dict, ask=input) -> None:
    """Ask once for each knob moved, in the order they were first moved.

    A knob turn sends a burst of CCs, and more of it arrives while the prompt waits: every CC
    of a knob already asked about is dropped, so an answer always lands on the knob the
    prompt names, and a knob moved during the prompt is asked about next.
    """
    asked: set[tuple[int, int]] = set()
    for message in inport:
        waiting = [message, *inport.iter_pending()]
        for cc in waiting:
            key = (cc.control, cc.channel + 1) if cc.type == "control_change" else None
            if key is None or key in asked:
                continue
            asked.add(key)
            target = ask_target(cc.control, cc.channel + 1, targets, ask)
            if target is not None:
                knobs[key] = learned_knob(cc.control, cc.channel + 1, target)


def learned_knob(cc: int, channel: int, target: str) -> Knob:
    default = 0 if target in BUTTONS or target in ("temperature", "prior") else 64
    low, high = {"temperature": (0.0, 1.5), "prior": (0.0, 1.0)}.get(target, (-3.0, 3.0))
    return Knob(cc, target, channel, low, high, default=default)
