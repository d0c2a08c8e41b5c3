"""Training speed in windows per second: one core, and every core as glsr-train uses them.

    python -m glsr_train.timing --config presets/train/melody.toml

Each rank times full training steps (augmentation, objective, backward, all-reduce, Adam) of
the recipe's last stage with every term on, on random tokens; with N ranks each takes 1/N of
the batch, as training does. ``--paper`` times the paper's terms alone (beta and GLSR).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from glsr_live.tokens import Vocabulary

from .augment import augmented
from .config import Config, ConfigError, load
from .distributed import Runtime, all_reduce_gradients, default_processes, launch, setup_runtime
from .glsr import RegularisedAttribute
from .model import GLSRVAE
from .objective import Batch, Setup, Weights, objective
from .rhythm import rhythm_rows

VOCAB = Vocabulary(48, 88)  # the melody model's range
LATE = 10**9  # past every annealing ramp: every term on


def step_seconds(config: Config, runtime: Runtime, steps: int) -> float:
    """Median seconds of one training step of this rank's share of the batch."""
    torch.manual_seed(runtime.rank)
    model = GLSRVAE(config.model, VOCAB.size, config.data.seq_len).to(runtime.device)
    optimiser = torch.optim.Adam(model.parameters())
    rows = -(-config.train.batch_size // runtime.world)
    tokens = torch.randint(0, VOCAB.size, (rows, config.data.seq_len), device=runtime.device)
    pitches = torch.from_numpy(VOCAB.pitch_table()).to(runtime.device)
    attributes = [RegularisedAttribute(a.name, a.dim, 1.0, 0.25)
                  for a in config.glsr.attributes] if config.regularize else []
    setup = Setup.of(config, attributes, pitches, runtime.world)
    seconds = []
    for _ in range(steps + 2):
        started = time.perf_counter()
        batch = rhythm_rows(tokens, config.augment, LATE)
        altered, mask = augmented(batch, config.augment, LATE, pitches)
        losses = objective(model, Batch(altered, batch, mask), Weights.at(config, LATE), setup)
        optimiser.zero_grad()
        losses.total.backward()
        all_reduce_gradients(model, runtime)
        optimiser.step()
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[2:])  # the first steps pay for allocation


def paper_only(config: Config) -> Config:
    """The same config with only the paper's terms (beta, GLSR) and no augmentation."""
    lean = copy.deepcopy(config)
    for name in ("calibration", "restoration", "anchor"):
        getattr(lean.schedule, name).value = 0.0
    lean.augment.thinning.value = lean.augment.stretching.value = 0.0
    return lean


def measure(args: argparse.Namespace) -> dict:
    """This process's measurement (one rank of ``--ranks``)."""
    config = load(args.config)
    if args.paper:
        config = paper_only(config)
    if args.batch:
        config.train.batch_size = args.batch
    runtime = setup_runtime(args.device)
    seconds = step_seconds(config, runtime, args.steps)
    gathered = [seconds]
    if runtime.world > 1:
        import torch.distributed as dist

        gathered = [0.0] * runtime.world
        dist.all_gather_object(gathered, seconds)
        dist.barrier()  # no rank leaves while another still talks to it (gloo aborts then)
        dist.destroy_process_group()
    slowest = max(gathered)  # ranks wait for each other at every all-reduce
    return {"ranks": runtime.world, "threads_per_rank": torch.get_num_threads(),
            "ms_per_step": round(slowest * 1000, 1),
            "windows_per_s": round(config.train.batch_size / slowest, 1)}


def run_ranks(args: argparse.Namespace, ranks: int) -> dict:
    """A measurement with ``ranks`` processes (1: in a child with one thread)."""
    argv = ["--config", str(args.config), "--steps", str(args.steps), "--device", args.device,
            "--json-rank"] + (["--paper"] if args.paper else []) + \
        (["--batch", str(args.batch)] if args.batch else [])
    if ranks == 1:
        done = subprocess.run([sys.executable, "-m", "glsr_train.timing", *argv],
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    output = f"/tmp/glsr-timing-{os.getpid()}.json"
    launch("glsr_train.timing", [*argv, "--write", output], ranks)
    with open(output) as handle:
        return json.load(handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glsr_train.timing",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="presets/train/melody.toml")
    parser.add_argument("--batch", type=int, help="override the recipe's batch size")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paper", action="store_true", help="the paper's terms alone")
    parser.add_argument("--json-rank", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        load(args.config)
    except ConfigError as error:
        print(f"timing: {error}", file=sys.stderr)
        return 2
    if args.json_rank:
        result = measure(args)
        if args.write:  # ranks of a launch: rank 0 hands the result over in a file
            if int(os.environ.get("RANK", "0")) == 0:
                with open(args.write, "w") as handle:
                    json.dump(result, handle)
        else:
            print(json.dumps(result))
        return 0
    every = default_processes(args.device)
    one = run_ranks(args, 1)
    report = {"config": str(args.config), "one_core": one}
    if every > 1:
        report["all_cores"] = run_ranks(args, every)
        report["speedup"] = round(report["all_cores"]["windows_per_s"]
                                  / one["windows_per_s"], 2)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
