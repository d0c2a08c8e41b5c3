"""Training speed: ms per step of the plain VAE, the paper's VAE + GLSR, and the whole recipe.

    python -m glsr_train.timing --config presets/train/paper.toml --batch 256
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

import torch

from glsr_live.tokens import Vocabulary

from . import config as config_module
from .glsr import RegularisedAttribute
from .model import GLSRVAE, ModelArgs
from .train import altered_batch, objective

VOCAB = Vocabulary(57, 81)  # the Bach soprano range


def time_steps(config, attributes, batch: int, steps: int, device: torch.device) -> float:
    """Median seconds of a full training step (forward, backward, Adam) on random tokens."""
    torch.manual_seed(0)
    model = GLSRVAE(ModelArgs(vocab_size=VOCAB.size, seq_len=config.data.seq_len,
                              **config.model.__dict__)).to(device)
    optimiser = torch.optim.Adam(model.parameters())
    tokens = torch.randint(0, VOCAB.size, (batch, config.data.seq_len), device=device)
    pitches = torch.from_numpy(VOCAB.pitch_table()).to(device)
    late = 10**9  # past every annealing ramp, so the GLSR term is on
    seconds = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        altered, mask = altered_batch(tokens, config, late, pitches)
        result = objective(model, altered, attributes, config, late, pitches, originals=tokens,
                           altered=mask)
        optimiser.zero_grad()
        result.loss.backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:])  # the first step pays for allocation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glsr_train.timing", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        config = config_module.load(args.config)
    except config_module.ConfigError as error:
        print(f"timing: {error}", file=sys.stderr)
        return 2
    attributes = [RegularisedAttribute(a.name, a.dim, 1.0, 0.25) for a in config.glsr.attributes]
    device = torch.device(args.device)
    plain = time_steps(config, [], args.batch, args.steps, device)
    paper = time_steps(without_additions(config), attributes, args.batch, args.steps, device)
    glsr = time_steps(config, attributes, args.batch, args.steps, device)
    print(json.dumps({"config": args.config, "batch": args.batch, "threads":
                      torch.get_num_threads(), "gradient": config.glsr.gradient,
                      "glsr_batch": config.glsr.batch, "plain_ms": round(plain * 1000, 1),
                      "paper_glsr_ms": round(paper * 1000, 1),
                      "glsr_ms": round(glsr * 1000, 1)}))
    return 0


def without_additions(config):
    """The same config with only the paper's terms (beta, GLSR) and no thinning."""
    lean = copy.deepcopy(config)
    for term, ramp in lean.schedule.items():
        if term not in ("beta", "glsr"):
            ramp.value = 0.0
    return lean


if __name__ == "__main__":
    sys.exit(main())
