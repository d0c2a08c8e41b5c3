"""``glsr-train --corpus DIR``: fit the shipped melody model to a musician's own melodies.

Starts from a model directory's weights.pt (the default model's unless ``--init``), keeps its
pitch range and its axes (mu, sigma and centre of each regularised attribute, so a knob means
what it meant), trains every loss term at its final weight from step 0 at a lower learning
rate, exports a model directory and writes a fit report (Markdown + JSON): files read and
skipped, phrases per split, held-out accuracy and each axis's Spearman before and after.
``--from-scratch`` trains the melody recipe on the folder alone instead.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np

from glsr_live.catalog import default_preset, presets_root, resolve_model
from glsr_live.model import Model

from .checkpoint import CheckpointError, load_checkpoint
from .config import Config, ConfigError, Ramp, Recipe, from_dict, load_recipe
from .corpus import usable_files
from .dataset import SPLITS, Dataset, build_for
from .evaluate import along_axis, encode_split, interpretability, knob_curve, reconstruction
from .stages import recorded_recipe, run_recipe

FINE_TUNE_STEPS = 1500  # at most: ~7 min at 2 threads
FINE_TUNE_EPOCHS = 20  # passes over the folder's windows (all transpositions): on 50 hooks
# (python -m glsr_train.syncopated, seed 0) held-out non-hold peaked at step 500 of 1000, about
# 18 passes; more learns the tunes by heart
FEWEST_STEPS = 300  # a small folder still moves the model (about a minute at 2 ranks)
FINE_TUNE_MINUTES = 9.0  # training's share of the 10 minutes a fine-tune may take (the
# report and the folder's parse take the rest); the decay ends by then on a slower machine
# chosen on the leave-O'Neill-out protocol's val (150 O'Neill val tunes, non-hold after a
# fine-tune on 50 O'Neill train tunes: 3e-4 0.359, 1e-3 0.384, 3e-3 0.424, 1e-2 0.389; base
# 0.332); the cosine decay ends at a tenth of it
FINE_TUNE_LR = (3e-3, 3e-4)
SWEEP_PHRASES = 200
TOO_FEW_TUNES = 30  # below this, or without held-out tunes, the report warns
TOO_FEW_WINDOWS = 500  # untransposed training windows
TOO_FEW_HELD_OUT = 200  # held-out phrases behind the before/after numbers
KNOB_REACH_KEPT = 0.8  # a knob end moving its attribute less than this share of the base's: warn


def base_weights(init: Path | None) -> tuple[Path, dict, Path | None]:
    """(weights file, its checkpoint, the model directory it belongs to or None)."""
    source = init if init is not None and init.is_file() else resolve_model(init)
    if source.is_dir():
        weights = source / "weights.pt"
        if not weights.exists():
            raise CheckpointError(f"{source}: this model directory has no weights.pt to "
                                  "fine-tune from (export it again with glsr-export)")
        checkpoint = load_checkpoint(weights)
        if "latent_stats" not in checkpoint:  # exported before weights.pt carried them
            info = json.loads((source / "model.json").read_text())
            checkpoint["latent_stats"] = info["latent_stats"]
        return weights, checkpoint, source
    return source, load_checkpoint(source), None


def fine_tune_config(base: dict, folders: list[str], max_steps: int | None,
                     max_minutes: float | None, lr: float | None = None,
                     freeze: list[str] | None = None) -> Config:
    """The base checkpoint's config on ``folders``, in its pitch range: every term at its final
    weight from step 0, the ``freeze`` parts held still."""
    config = from_dict(base["config"])
    config.data = replace(config.data, corpus=folders, max_windows=0,
                          vocab=[int(v) for v in base["vocab"]])
    for table in (config.schedule, config.augment):
        for term, value in vars(table).items():
            if isinstance(value, Ramp):
                setattr(table, term, Ramp(value=value.value))
    lr, lr_final = (lr, lr * FINE_TUNE_LR[1] / FINE_TUNE_LR[0]) if lr else FINE_TUNE_LR
    config.train = replace(config.train, lr=lr, lr_final=lr_final, warmup=50,
                           max_steps=max_steps or FINE_TUNE_STEPS,
                           max_minutes=max_minutes or FINE_TUNE_MINUTES, eval_every=100,
                           checkpoint_every=100, patience=5, eval_windows=2048,
                           decay_in_time=True,
                           freeze=list(freeze or []))
    return config


def steps_for(config: Config) -> int:
    """Steps for ``FINE_TUNE_EPOCHS`` passes over the folder's training windows, within
    ``FEWEST_STEPS`` .. ``FINE_TUNE_STEPS`` (the folder is parsed once and cached)."""
    windows = len(build_for(config.data, progress=False).windows("train"))
    return fine_tune_steps(windows, config.train.batch_size)


def fine_tune_steps(windows: int, batch_size: int) -> int:
    return int(min(FINE_TUNE_STEPS, max(FEWEST_STEPS,
                                        round(FINE_TUNE_EPOCHS * windows / batch_size))))


def scratch_recipe(recipe: Path, folders: list[str]) -> Recipe:
    """``recipe``'s stages, each on ``folders``."""
    loaded = load_recipe(recipe)
    for _, config in loaded.stages:
        config.data = replace(config.data, corpus=folders, max_windows=0)
    return loaded


def refuse_an_existing_run(args: argparse.Namespace) -> None:
    if not args.resume and (args.out / "latest.pt").exists():
        raise ConfigError(f"{args.out} already holds a run; add --resume or choose another --out")


def check_fine_tune(args: argparse.Namespace) -> None:
    """What a fine-tune would refuse, said once before ranks start (each would say it)."""
    for folder in args.corpus:
        usable_files(Path(folder))
    refuse_an_existing_run(args)
    base_weights(args.init)


def fine_tune(args: argparse.Namespace) -> int:
    """``--corpus DIR``: train from the base model's weights (or the recipe, from scratch) on
    the folder, export, and write the fit report."""
    started = time.perf_counter()
    folders = [str(Path(folder)) for folder in args.corpus]
    weights, base, base_dir = base_weights(args.init)
    refuse_an_existing_run(args)
    if args.resume:
        args.init = None  # the run's checkpoint holds everything
        code = run_recipe(args, recorded_recipe(args.out))
    else:
        if args.from_scratch:
            recipe, init = scratch_recipe(args.config or default_recipe(), folders), None
        else:
            config = fine_tune_config(base, folders, args.max_steps, args.max_minutes,
                                      args.lr, args.freeze)
            if args.max_steps is None:  # as many steps as the folder's size calls for
                config.train = replace(config.train, max_steps=steps_for(config))
            recipe = Recipe(None, [("", config)])
            init = base
        if args.regularize is not None:
            for _, config in recipe.stages:
                config.regularize = args.regularize == "glsr"
        args.init = weights if init is not None else None
        code = run_recipe(args, recipe, init)
    if code != 0 or args.no_export or os.environ.get("RANK", "0") != "0":
        return code  # rank 0 alone reports
    model_dir = args.export or args.out / "model"
    report = write_fit_report(args.out, model_dir, base_dir, str(base_dir or weights),
                              time.perf_counter() - started)
    print(f"glsr-train: held-out accuracy {before_after(report)}; report in "
          f"{args.out / 'fit-report.md'}")
    for note in report["warnings"]:
        print(f"glsr-train: warning: {note}")
    return 0


def default_recipe() -> Path:
    return presets_root() / "train" / "melody.toml"


def before_after(report: dict) -> str:
    before = (report["before"] or {}).get("recon_accuracy", float("nan"))
    return f"{before:.3f} -> {report['after']['recon_accuracy']:.3f}"


# ---------------------------------------------------------------- the report


def held_out(dataset: Dataset) -> tuple[str, np.ndarray]:
    """The split the report measures (test, else val, else train) and its untransposed
    windows: a musician plays their tunes in their own keys."""
    for split in ("test", "val", "train"):
        windows = dataset.windows(split, transpose=False)
        if len(windows):
            return split, windows
    raise ConfigError("no windows at all in the folder")


def knob_ranges() -> dict[str, tuple[float, float]]:
    """Each attribute knob's range (in spreads) in the default preset."""
    raw = tomllib.loads(default_preset().read_text())
    return {knob["target"]: (float(knob.get("min", -3.0)), float(knob.get("max", 3.0)))
            for knob in raw.get("knob", []) if knob.get("mode", "offset") == "offset"}


def measure(model: Model, windows: np.ndarray) -> dict:
    """Reconstruction and, per axis, Spearman along it, interpretability, and how far the
    default preset's knob moves the attribute at its two ends (its units, mean over phrases)."""
    split = encode_split(model, windows)
    rng = np.random.default_rng(0)
    chosen = split.mu[rng.permutation(len(split.mu))[:SWEEP_PHRASES]]
    recon = reconstruction(model, split)
    result = {"recon_accuracy": round(recon["recon_accuracy"], 4),
              "recon_accuracy_nonhold": round(recon["recon_accuracy_nonhold"], 4),
              "windows": int(len(windows)), "axes": {}}
    ranges = knob_ranges()
    for name, axis in model.info.axes.items():
        sweep = along_axis(model, chosen, axis.dim, name)
        curve = knob_curve(model, chosen, axis.dim, name, ranges.get(name, (-3.0, 3.0)))
        result["axes"][name] = {
            "spearman_along_axis": round(sweep["spearman_along_axis"], 4),
            "interpretability": round(interpretability(model, split, name)["interpretability"], 4),
            "knob_ends": [round(curve["low_end_change"], 2), round(curve["high_end_change"], 2)]}
    return result


def shrunken_knobs(before: dict | None, after: dict) -> list[str]:
    """A warning for each knob whose reach at either end is under 80 % of the base's."""
    notes = []
    for name, axis in after["axes"].items():
        base = ((before or {}).get("axes") or {}).get(name)
        if base is None:
            continue
        ends, base_ends = axis["knob_ends"], base["knob_ends"]
        if any(abs(a) < KNOB_REACH_KEPT * abs(b) for a, b in zip(ends, base_ends, strict=True)):
            notes.append(f"the {name} knob's reach shrank: its ends move {name} by "
                         f"{ends[0]:+.1f} / {ends[1]:+.1f} (the base: {base_ends[0]:+.1f} / "
                         f"{base_ends[1]:+.1f})")
    return notes


def warnings_for(dataset: Dataset, split: str) -> list[str]:
    tunes = len(dataset.names)
    train_windows = len(dataset.windows("train", transpose=False))
    notes = []
    if tunes < TOO_FEW_TUNES:
        notes.append(f"only {tunes} tunes: too few to trust the numbers (aim for "
                     f"{TOO_FEW_TUNES} or more)")
    if train_windows < TOO_FEW_WINDOWS:
        notes.append(f"only {train_windows} training phrases (bar-line windows): the model "
                     "may learn these tunes by heart rather than your style")
    held_out = len(dataset.windows(split, transpose=False))
    if split != "train" and held_out < TOO_FEW_HELD_OUT:
        notes.append(f"only {held_out} held-out phrases from {len(dataset.pieces(split))} "
                     "tunes: a before/after difference of a few points is noise")
    if split != "test":
        notes.append(f"no held-out test tunes: the numbers are on the {split} split, which "
                     + ("training saw" if split == "train" else "chose the checkpoint"))
    return notes


def fit_report(dataset: Dataset, before: Model | None, after: Model, seconds: float, base: str
               ) -> dict:
    """``before`` is None when the base was a bare checkpoint (no ONNX model to run)."""
    split, windows = held_out(dataset)
    pieces = {s: len(dataset.pieces(s)) for s in SPLITS}
    measured_before = measure(before, windows) if before is not None else None
    measured_after = measure(after, windows)
    return {
        "folders": list(dataset.settings.sources),
        "base_model": base,
        "files_read": len(dataset.names),
        "files_skipped": dataset.skipped,
        "tunes_per_split": pieces,
        "phrases_per_split": {s: int(len(dataset.windows(s, transpose=False))) for s in SPLITS},
        "measured_on": split,
        "before": measured_before,
        "after": measured_after,
        "minutes": round(seconds / 60, 2),
        "warnings": warnings_for(dataset, split) + shrunken_knobs(measured_before,
                                                                 measured_after),
    }


def report_markdown(report: dict) -> str:
    after = report["after"]
    before = report["before"] or {"recon_accuracy": float("nan"),
                                  "recon_accuracy_nonhold": float("nan"), "axes": {}}
    lines = [
        "# Fit report", "",
        f"Fine-tuned from `{report['base_model']}` on {', '.join(report['folders'])} in "
        f"{report['minutes']:.1f} min.", "",
        f"- files read: {report['files_read']}, skipped: {len(report['files_skipped'])}",
        *[f"  - `{name}`: {why}" for name, why in report["files_skipped"].items()],
        "- tunes per split: " + ", ".join(f"{k} {v}" for k, v in
                                          report["tunes_per_split"].items()),
        "- phrases (bar-line windows, untransposed) per split: "
        + ", ".join(f"{k} {v}" for k, v in report["phrases_per_split"].items()), "",
        f"Measured on the **{report['measured_on']}** split ({after['windows']} phrases):", "",
        "| | before | after |", "|---|---|---|",
        f"| reconstruction accuracy | {before['recon_accuracy']:.3f} | "
        f"{after['recon_accuracy']:.3f} |",
        f"| accuracy on non-hold steps | {before['recon_accuracy_nonhold']:.3f} | "
        f"{after['recon_accuracy_nonhold']:.3f} |",
    ]
    for name in after["axes"]:
        b, a = before["axes"].get(name, {}), after["axes"][name]
        lines.append(f"| {name}: Spearman along its axis | "
                     f"{b.get('spearman_along_axis', float('nan')):.3f} | "
                     f"{a['spearman_along_axis']:.3f} |")
        ends = b.get("knob_ends", [float("nan")] * 2)
        lines.append(f"| {name} knob's ends (change in {name}) | {ends[0]:+.1f} / "
                     f"{ends[1]:+.1f} | {a['knob_ends'][0]:+.1f} / {a['knob_ends'][1]:+.1f} |")
    lines.append("")
    lines += [f"- **Warning:** {note}" for note in report["warnings"]]
    return "\n".join(lines) + "\n"


def write_fit_report(run: Path, model_dir: Path, base_dir: Path | None, base_name: str,
                     seconds: float) -> dict:
    """Measure the base and the fine-tuned model on the folder's held-out tunes; write
    RUN/fit-report.json and .md; returns the report."""
    config = from_dict(load_checkpoint(run / "best.pt")["config"])
    dataset = build_for(config.data, progress=False)
    after = Model(model_dir, threads=2)
    before = Model(base_dir, threads=2) if base_dir is not None else None
    report = fit_report(dataset, before, after, seconds, base_name)
    (run / "fit-report.json").write_text(json.dumps(report, indent=1))
    (run / "fit-report.md").write_text(report_markdown(report))
    return report
