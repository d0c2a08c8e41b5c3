"""glsr-train: train the GLSR-VAE from one recipe file; resumable, one rank per core.

    glsr-train --config presets/train/melody.toml --out runs/melody

A recipe's stages (``[[stage]]``) run one after another, each from the best weights of the
one before; run the same command again (or add --resume) to go on where it stopped. The last
stage's best.pt is exported to OUT/model. ``--corpus DIR`` fine-tunes instead (finetune.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch.distributed as dist

from glsr_live.errors import ModelError

from .checkpoint import CheckpointError
from .config import FREEZABLE, ConfigError, Recipe, load_recipe
from .corpus import CorpusError
from .distributed import default_processes, launch
from .stages import recorded_recipe, run_recipe

EXIT_USAGE = 2


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glsr-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="recipe TOML (presets/train/*.toml)")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--init", type=Path, metavar="CHECKPOINT",
                        help="start from these weights (fine-tuning a checkpoint)")
    parser.add_argument("--from-stage", metavar="NAME",
                        help="start the recipe at this stage, from --init's weights (the "
                             "stages before it are not trained)")
    parser.add_argument("--max-steps", type=int, help="override the last stage's max_steps")
    parser.add_argument("--max-minutes", type=float,
                        help="override the last stage's max_minutes")
    parser.add_argument("--lr", type=positive_float,
                        help="override the last stage's learning rate (lr_final scaled with it)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--processes", type=int, metavar="N",
                        help="data-parallel ranks (default: one per core on a CPU, 1 on a GPU)")
    parser.add_argument("--export", type=Path, metavar="DIR",
                        help="model directory to export best.pt to (default: OUT/model)")
    parser.add_argument("--no-export", action="store_true", help="train only")
    parser.add_argument("--regularize", choices=["glsr", "none"], default=None,
                        help="'none' trains the unregularised baseline")
    parser.add_argument("--corpus", action="append", metavar="DIR",
                        help="fine-tune on your own melodies (MIDI/MusicXML/ABC files under "
                             "DIR; repeatable) from the default model, or --init MODEL_DIR; "
                             "writes OUT/fit-report.md")
    parser.add_argument("--freeze", action="append", choices=FREEZABLE, default=None,
                        help="with --corpus: hold this part of the model still (repeatable)")
    parser.add_argument("--from-scratch", action="store_true",
                        help="with --corpus: train the melody recipe (or --config) on DIR alone")
    args = parser.parse_args(argv)
    if args.from_scratch and not args.corpus:
        parser.error("--from-scratch goes with --corpus")
    if args.freeze and (not args.corpus or args.from_scratch):
        parser.error("--freeze goes with --corpus (a fine-tune)")
    if args.from_stage and (args.corpus or (args.init is None and not args.resume)):
        parser.error("--from-stage needs --init (the weights that stage starts from), "
                     "not --corpus")
    if args.processes is not None and args.processes < 1:
        parser.error("--processes must be at least 1")
    return args


def recipe_of(args: argparse.Namespace) -> Recipe:
    """The recipe to train: the file given, or (``--resume`` alone) the one the run recorded."""
    if args.config is not None:
        recipe = load_recipe(args.config)
    elif args.resume:
        recipe = recorded_recipe(args.out)
    else:
        raise ConfigError("--config is required for a new run")
    if recipe.init is not None and args.init is None and not args.resume:
        args.init = init_weights(recipe)
    names = [name for name, _ in recipe.stages]
    if getattr(args, "from_stage", None) and args.from_stage not in names:
        raise ConfigError(f"--from-stage {args.from_stage}: the recipe's stages are "
                          f"{', '.join(repr(name) for name in names)}")
    last = recipe.final
    if args.regularize is not None:
        for _, config in recipe.stages:
            config.regularize = args.regularize == "glsr"
    if args.max_steps is not None:
        last.train.max_steps = args.max_steps
    if args.max_minutes is not None:
        last.train.max_minutes = args.max_minutes
    if args.lr is not None:
        last.train.lr_final *= args.lr / last.train.lr
        last.train.lr = args.lr
    return recipe


def init_weights(recipe: Recipe) -> Path:
    """The weights.pt of the model a recipe's ``init`` names: a folder beside the recipe file,
    or an installed model's name."""
    from glsr_live.catalog import resolve_model

    beside = (recipe.path.parent / recipe.init) if recipe.path else None
    directory = beside if beside is not None and beside.is_dir() else resolve_model(recipe.init)
    weights = directory / "weights.pt"
    if not weights.is_file():
        raise ConfigError(f"init = {recipe.init!r}: {directory} has no weights.pt")
    return weights


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    rank = os.environ.get("RANK")  # set in a rank this command (or torchrun) started
    processes = 1 if rank is not None else args.processes or default_processes(args.device)
    try:
        if processes > 1:
            if args.corpus:
                from .finetune import check_fine_tune

                check_fine_tune(args)  # an empty folder: one line here, not one per rank
            else:
                recipe_of(args)  # a bad recipe: one line here, not one per rank
            return launch("glsr_train.train", argv, processes)
        if args.corpus:
            from .finetune import fine_tune  # the runtime's catalog: only for fine-tunes

            return fine_tune(args)
        return run_recipe(args, recipe_of(args))
    except (ConfigError, CheckpointError, CorpusError, ModelError) as error:
        if rank in (None, "0"):
            print(f"glsr-train: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
