"""Running a recipe: each stage in turn in its folder (a finished one kept), a stopped one
resumed, the last one exported. ``glsr-train`` and the fine-tune both run recipes here."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from .checkpoint import CheckpointError, load_checkpoint, load_latest
from .config import Config, ConfigError, Recipe, from_dict, load_recipe
from .distributed import Runtime, barrier, rank_divergence, setup_runtime
from .loop import Run, make_run, train_loop
from .provenance import provenance
from .rundir import FINISHED, forget_metrics_after, stage_folder, write_config

EXIT_INTERRUPTED = 130
EXIT_PARITY = 3
EXIT_DIVERGED = 4
RANK_TOLERANCE = 1e-6  # equal ranks are equal to the bit; a failed all-reduce is far off


class Stop(Exception):
    """SIGTERM or SIGINT (also where a shell ignores SIGINT for background jobs)."""


def raise_stop(signum, frame) -> None:
    raise Stop()


def recorded_recipe(out: Path) -> Recipe:
    """The recipe a run in ``out`` was started with: its file if it is still there, else the
    config its checkpoint holds (one stage)."""
    folders = [out, *sorted((out / "stages").glob("*"), key=lambda p: p.stat().st_mtime,
                            reverse=True)]
    latest = next((folder for folder in folders if (folder / "latest.pt").exists()), None)
    if latest is None:
        raise CheckpointError(f"nothing to resume in {out}")
    checkpoint = load_latest(latest)
    started = checkpoint.get("provenance", {}).get("config_file")
    if started and Path(started).exists():
        return load_recipe(started)
    if latest != out:
        raise ConfigError(f"{out} stopped in an earlier stage of {started}, which is gone: "
                          "give its --config")
    return Recipe(None, [("", from_dict(checkpoint["config"]))])


def run_recipe(args: argparse.Namespace, recipe: Recipe, init: dict | None = None) -> int:
    """Each stage in turn (a finished one is kept), then the export."""
    runtime = setup_runtime(args.device)
    init_path = args.init
    start = first_stage(recipe, getattr(args, "from_stage", None))
    for index, (name, config) in enumerate(recipe.stages):
        last = index == len(recipe.stages) - 1
        out = stage_folder(args.out, index, name, last)
        if index < start:
            mark_skipped(out, runtime, init_path)
            continue
        if (out / FINISHED).exists():
            if (out / "best.pt").exists():  # a skipped stage (--from-stage) has none
                init_path, init = out / "best.pt", None
            continue
        if init_path is None and index > 0 and not (out / "latest.pt").exists():
            raise ConfigError(f"stage {name!r} starts after skipped stages: give --init")
        if runtime.main and len(recipe.stages) > 1:
            print(f"glsr-train: stage {index + 1}/{len(recipe.stages)} {name or ''} in {out}",
                  flush=True)
        if init is None and init_path is not None:
            init = load_checkpoint(init_path)
        code = run_stage(args, config, recipe, name, out, runtime, init_path, init)
        if code != 0:
            return code
        if runtime.main and not last:
            (out / FINISHED).write_text(f"{recipe.path}\n")
        init_path, init = out / "best.pt", None
    code = 0
    if runtime.main and not args.no_export:
        code = export_model(args.out, args.export or args.out / "model")
    barrier(runtime)  # no rank leaves while another still talks to it (gloo aborts then)
    return code


def first_stage(recipe: Recipe, name: str | None) -> int:
    """The index of the stage ``--from-stage`` names (0 when none is given)."""
    return [stage for stage, _ in recipe.stages].index(name) if name else 0


def mark_skipped(out: Path, runtime: Runtime, init_path: Path | None) -> None:
    """A stage before ``--from-stage``: marked finished with no best.pt, so a resume without
    the flag goes on at the stage it started from, from the same weights."""
    if runtime.main and not (out / FINISHED).exists():
        out.mkdir(parents=True, exist_ok=True)
        (out / FINISHED).write_text(f"skipped: the run started after it, from {init_path}\n")


def run_stage(args: argparse.Namespace, config: Config, recipe: Recipe, name: str, out: Path,
              runtime: Runtime, init_path: Path | None, init: dict | None) -> int:
    """Train one stage in ``out``: a new run, or the one there resumed."""
    saved = any((out / name).exists() for name in ("latest.pt", "previous.pt"))
    resume = load_latest(out) if saved else None
    if resume is not None and not args.resume and out == args.out:
        raise ConfigError(f"{out} already holds a run; add --resume or choose another --out")
    if resume is not None:
        config = from_dict(resume["config"])
        last = name == recipe.stages[-1][0]
        if last and args.max_steps is not None:
            config.train.max_steps = args.max_steps
        if last and args.max_minutes is not None:
            config.train.max_minutes = args.max_minutes
    run = make_run(config, out, runtime, resume, None if resume else init)
    run.provenance = (resume or {}).get("provenance") or provenance(
        config, recipe.path, run.dataset, runtime.device, init_path, init, name, runtime.world)
    if runtime.main:
        write_config(out, config.to_dict(), config.digest())  # after make_run's adjustments
        if resume is not None:
            forget_metrics_after(out / "metrics.jsonl", run.state.step)
        describe(run, resume is not None)
    code = train_guarded(run)
    if code != 0:
        return code
    return check_ranks(run)


def describe(run: Run, resumed: bool) -> None:
    print(f"glsr-train: {len(run.train)} train / {len(run.val)} val windows, "
          f"{sum(p.numel() for p in run.model.parameters()) / 1e6:.2f} M parameters, "
          f"device {run.runtime.device}, {run.runtime.world} process(es), "
          f"GLSR {[(a.name, a.dim, round(a.mu, 3), round(a.sigma, 3)) for a in run.attributes]}"
          f"{f', resuming at step {run.state.step}' if resumed else ''}", flush=True)


def train_guarded(run: Run) -> int:
    """The loop, a checkpoint saved when SIGINT or SIGTERM stops it."""
    previous = {sig: signal.signal(sig, raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        reason = train_loop(run, run.config.train.max_steps, run.config.train.max_minutes)
    except Stop:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not tear the save
        run.checkpoint()
        if run.runtime.main:
            print(f"\nglsr-train: stopped at step {run.state.step}; run the same command again "
                  "to go on", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not (run.out / "best.pt").exists():
        run.checkpoint("best.pt")  # runs shorter than the annealing still export something
    if run.runtime.main:
        print(f"glsr-train: {reason} at step {run.state.step} after "
              f"{run.state.seconds / 60:.1f} min; run in {run.out}", flush=True)
    return 0


def check_ranks(run: Run) -> int:
    divergence = rank_divergence(run.model, run.runtime)
    if run.runtime.world > 1 and run.runtime.main:
        print(f"glsr-train: parameters on {run.runtime.world} ranks differ by at most "
              f"{divergence:.3g}", flush=True)
    if divergence > RANK_TOLERANCE:
        print("glsr-train: data-parallel ranks diverged (gradients were not averaged)",
              file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def export_model(run: Path, out: Path) -> int:
    """Export the run's best.pt to an ONNX model directory (glsr-export's work)."""
    from .export import ParityError, export  # onnx and onnxruntime: only when exporting

    started = time.perf_counter()
    try:
        info = export(run, out)
    except ParityError as error:
        print(f"glsr-train: not exported: {error}", file=sys.stderr)
        return EXIT_PARITY
    print(f"glsr-train: exported step {info['training']['steps']} to {out} in "
          f"{time.perf_counter() - started:.0f} s")
    return 0
