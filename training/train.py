"""glsr-train: train the GLSR-VAE; resumable, data-parallel under torchrun.

The run directory holds config.json (resolved), metrics.jsonl (one line per evaluation),
latest.pt and previous.pt (the last two checkpoints, written atomically) and best.pt.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from glsr_live.attributes import compute
from glsr_live.errors import ModelError
from glsr_live.model import logits_to_tokens
from glsr_live.tokens import HOLD, Vocabulary

from . import config as config_module
from . import finetune
from .augment import stretch_range, thin_notes
from .checkpoint import CheckpointError, load_checkpoint, load_latest, save_checkpoint
from .config import Config, ConfigError
from .corpus import CorpusError
from .dataset import Dataset, build_for
from .glsr import (
    GRADIENT_ESTIMATORS,
    RegularisedAttribute,
    attribute_gradients,
    calibrated_position,
    calibration_penalty,
    glsr_penalty,
    ordering_penalty,
    spread_along_axes,
    token_attributes,
)
from .metrics import AXIS_SPAN, mean_row_spearman, spearman, token_accuracy
from .model import GLSRVAE, ModelArgs, kl_per_dim, reparameterise
from .provenance import provenance

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_PARITY = 3
EXIT_DIVERGED = 4
RANK_TOLERANCE = 1e-6  # equal ranks are equal to the bit; a failed all-reduce is far off


# ---------------------------------------------------------------- setup


@dataclass
class Runtime:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def choose_device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup_runtime(device_name: str) -> Runtime:
    """Single process, or one rank of a torchrun job (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_name, local_rank)
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():  # a two-stage recipe sets up once for both stages
            dist.init_process_group(backend)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        return Runtime(dist.get_rank(), world, device)
    return Runtime(0, 1, device)


def regularised_attributes(config: Config, train: np.ndarray, dataset: Dataset
                           ) -> list[RegularisedAttribute]:
    """Resolve mu/sigma 'auto': the 1st-99th percentile spread over the prior's range."""
    if not config.regularize:
        return []
    resolved = []
    for attribute in config.glsr.attributes:
        values = compute(attribute.name, train, dataset.vocab, dataset.grid)
        low, high = np.nanpercentile(values, [1, 99])
        mu = (high - low) / config.glsr.prior_range if attribute.mu == "auto" else attribute.mu
        sigma = mu / 4 if attribute.sigma == "auto" else attribute.sigma
        resolved.append(RegularisedAttribute(attribute.name, attribute.dim, float(mu),
                                             float(sigma), float(np.nanmean(values))))
    return resolved


def learning_rate(step: int, config: Config) -> float:
    """Linear warm-up, then cosine decay from lr to lr_final over max_steps."""
    train = config.train
    warmup = min(train.warmup, train.max_steps // 10 + 1)
    if step < warmup:
        return train.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, train.max_steps - warmup))
    return train.lr_final + 0.5 * (train.lr - train.lr_final) * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------- one step


@dataclass
class StepResult:
    loss: torch.Tensor
    parts: dict[str, float]


def altered_batch(batch: torch.Tensor, config: Config, step: int, pitches: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) -> (B, L) tokens and (B,) mask of the rows thinned or stretched at ``step``."""
    thinned, thin_mask = thin_notes(batch, config.weight("thinning", step))
    stretched, stretch_mask = stretch_range(thinned, config.weight("stretching", step), pitches,
                                            exclude=thin_mask,
                                            widest=config.train.widest_stretch)
    return stretched, thin_mask | stretch_mask


def glsr_rows(batch_size: int, count: int, device: torch.device) -> torch.Tensor:
    """(count,) random rows of the batch for the costly GLSR term, whole and altered alike."""
    return torch.randperm(batch_size, device=device)[:count]


def objective(model: GLSRVAE, tokens: torch.Tensor, attributes: list[RegularisedAttribute],
              config: Config, step: int, pitches: torch.Tensor,
              originals: torch.Tensor | None = None,
              altered: torch.Tensor | None = None) -> StepResult:
    """-ELBO and every scheduled regulariser at ``step``, for one batch (B, L).

    ``originals`` (B, L) is the batch before thinning and stretching (``tokens`` after) and
    ``altered`` (B,) marks the rows that were changed, for the restoration and anchor terms.
    """
    mu, logvar = model.encode(tokens)  # (B, d) each
    z = reparameterise(mu, logvar)
    logits = model.decode(z)  # (B, L, K)
    nll = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none").sum(1).mean()
    kl = kl_per_dim(mu, logvar).sum(1).mean()
    beta = config.weight("beta", step)
    loss = nll + beta * kl
    parts = {"nll": nll.item(), "kl": kl.item(), "beta": beta}
    if not attributes:
        return StepResult(loss, parts)
    alpha = config.weight("glsr", step)
    if alpha > 0:
        loss = loss + alpha * glsr_term(model, z, attributes, config, pitches, parts)
    parts["alpha"] = alpha
    loss = loss + encoder_terms(mu, tokens, attributes, pitches, config, step, parts)
    if originals is not None and altered is not None and bool(altered.any()):
        loss = loss + altered_row_terms(model, mu[altered], z[altered], tokens[altered],
                                        originals[altered], attributes, pitches, config, step,
                                        parts)
    return StepResult(loss, parts)


def glsr_term(model: GLSRVAE, z: torch.Tensor, attributes: list[RegularisedAttribute],
              config: Config, pitches: torch.Tensor, parts: dict) -> torch.Tensor:
    """The paper's GLSR penalty, summed over attributes, on ``glsr.batch`` random rows of z."""
    rows = glsr_rows(len(z), config.glsr.batch, z.device)
    sub = spread_along_axes(z[rows], attributes, config.glsr.axis_spread)
    estimator = GRADIENT_ESTIMATORS[config.glsr.gradient]
    unrolled = sub.device.type == "cuda" and estimator is attribute_gradients
    def each(option: str) -> list:
        return [config.glsr.option_of(a.name, option) for a in attributes]

    options = ({"step": each("difference_step"), "straight_through": each("straight_through")}
               if estimator is not attribute_gradients else {})
    gradients = estimator(  # unrolled: cuDNN has no double backward
        lambda zz: model.decode(zz, twice_differentiable=unrolled), sub, attributes, pitches,
        sharpness=each("sharpness"), **options)
    penalty = glsr_penalty(gradients, attributes)  # (n_attributes,)
    for attribute, value, grad in zip(attributes, penalty, gradients.mean(0), strict=True):
        parts[f"glsr_{attribute.name}"] = value.item()
        parts[f"slope_{attribute.name}"] = grad.item()
    return penalty.sum()


def calibration_limit(config: Config) -> float:
    """Calibration targets stop at half the prior's range: where the knob's travel ends."""
    return config.glsr.prior_range / 2


def encoder_terms(mu: torch.Tensor, tokens: torch.Tensor, attributes: list[RegularisedAttribute],
                  pitches: torch.Tensor, config: Config, step: int, parts: dict
                  ) -> torch.Tensor | float:
    """Scheduled ordering and calibration terms on mu (B, d)."""
    total: torch.Tensor | float = 0.0
    alignment_weight = config.weight("alignment", step)
    calibration_weight = config.weight("calibration", step)
    if alignment_weight == 0 and calibration_weight == 0:
        return total  # GLSR alone (the paper): no need for the batch's attributes
    values = token_attributes(tokens, attributes, pitches)  # (B, n_attributes), NaN: undefined
    if alignment_weight > 0:
        alignment = sum(ordering_penalty(mu[:, a.dim], values[:, i])
                        for i, a in enumerate(attributes))
        total = total + alignment_weight * alignment
        parts["align"] = alignment.item()
    if calibration_weight > 0:
        limit = calibration_limit(config)
        calibration = sum(config.glsr.option_of(a.name, "calibration_scale")
                          * calibration_penalty(mu[:, a.dim], values[:, i], a, limit)
                          for i, a in enumerate(attributes))
        total = total + calibration_weight * calibration
        parts["calib"] = calibration.item()
    return total


def altered_row_terms(model: GLSRVAE, mu: torch.Tensor, z: torch.Tensor,
                      tokens: torch.Tensor, originals: torch.Tensor,
                      attributes: list[RegularisedAttribute], pitches: torch.Tensor,
                      config: Config, step: int, parts: dict) -> torch.Tensor | float:
    """Scheduled restoration and content-anchor terms on the altered rows (n, ...) only."""
    total: torch.Tensor | float = 0.0
    restoration_weight = config.weight("restoration", step)
    anchor_weight = config.weight("anchor", step)
    if restoration_weight > 0:
        restoration = restoration_loss(model, z, tokens, originals, attributes, pitches, config)
        total = total + restoration_weight * restoration
        parts["restore"] = restoration.item()
    if anchor_weight > 0:
        anchor = content_anchor_penalty(model, mu, originals, attributes)
        total = total + anchor_weight * anchor
        parts["anchor"] = anchor.item()
    return total


def restoration_loss(model: GLSRVAE, z: torch.Tensor, altered: torch.Tensor,
                     originals: torch.Tensor, attributes: list[RegularisedAttribute],
                     pitches: torch.Tensor, config: Config) -> torch.Tensor:
    """Cross-entropy of the original windows (n, L) decoded from their altered ones' z (n, d).

    Each regularised coordinate moves by how far apart calibration puts the two windows, so
    turning the notes knob up from a sparse phrase must bring back plausible notes, and the
    range knob must widen or narrow a stretched phrase back to its own intervals. GLSR's
    slope alone cannot teach that where the decoder is sure of silence: the softmax saturates
    and the expected note count has no gradient, while this cross-entropy always has one.
    """
    limit = calibration_limit(config)
    whole = token_attributes(originals, attributes, pitches)  # (n, n_attributes)
    changed = token_attributes(altered, attributes, pitches)
    moved = z.clone()
    for i, attribute in enumerate(attributes):
        shift = (calibrated_position(whole[:, i], attribute, limit)
                 - calibrated_position(changed[:, i], attribute, limit))
        moved[:, attribute.dim] += shift.nan_to_num(0.0)  # register of silence: no move
    logits = model.decode(moved)  # (n, L, K)
    return F.cross_entropy(logits.transpose(1, 2), originals, reduction="none").sum(1).mean()


def content_anchor_penalty(model: GLSRVAE, mu: torch.Tensor, originals: torch.Tensor,
                           attributes: list[RegularisedAttribute]) -> torch.Tensor:
    """Mean squared distance, off the regularised dims, of altered codes mu (n, d) from their
    whole windows' codes (held fixed).

    Thinning or stretching should move a phrase along its axes, not elsewhere. Without this the
    one silent window is coded far from every melody, where no knob position decodes notes.
    """
    with torch.no_grad():
        whole, _ = model.encode(originals)  # (n, d)
    free = torch.ones(mu.shape[1], dtype=torch.bool, device=mu.device)
    free[[a.dim for a in attributes]] = False
    return (mu[:, free] - whole[:, free]).pow(2).sum(1).mean()


def all_reduce_gradients(model: torch.nn.Module, runtime: Runtime) -> None:
    """Average gradients over ranks: one flat all-reduce (works with double backward)."""
    if runtime.world == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= runtime.world
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset: offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def rank_divergence(model: torch.nn.Module, runtime: Runtime) -> float:
    """Max |difference| of any parameter between this rank and rank 0 (0.0 single-process).

    Data-parallel ranks see different batches; only averaged gradients keep them equal, so a
    non-zero value means the all-reduce failed.
    """
    if runtime.world == 1:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, 0)
    gap = (flat - reference).abs().max().reshape(1)
    dist.all_reduce(gap, op=dist.ReduceOp.MAX)
    return float(gap.item())


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: GLSRVAE, windows: torch.Tensor, dataset: Dataset,
             attributes: list[RegularisedAttribute], config: Config) -> dict:
    """Validation NLL/KL at the posterior mean, token accuracy, per-dim KL, and per axis the
    encoder-side Spearman and the along-axis Spearman of the argmax decode."""
    model.eval()
    mus, logvars, predictions, nll = [], [], [], 0.0
    for batch in windows.split(1024):
        mu, logvar = model.encode(batch)
        logits = model.decode(mu)
        nll += F.cross_entropy(logits.transpose(1, 2), batch, reduction="none").sum().item()
        mus.append(mu)
        logvars.append(logvar)
        predictions.append(logits_to_tokens(logits.cpu().numpy()))  # as the runtime decodes
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    kl = kl_per_dim(mu, logvar).mean(0).cpu().numpy()
    target = windows.cpu().numpy()
    # the argmax made canonical, as the runtime plays it: the same quantity glsr-eval reports
    decoded = np.concatenate(predictions)
    accuracy, accuracy_nonhold = token_accuracy(decoded, target, HOLD)
    result = {
        "val_nll": nll / len(windows), "val_kl": float(kl.sum()),
        "val_kl_per_dim": [round(float(k), 4) for k in kl],
        "val_recon_accuracy": accuracy, "val_recon_accuracy_nonhold": accuracy_nonhold,
    }
    result["val_objective"] = result["val_nll"] + config.schedule["beta"].value * result["val_kl"]
    mu_np = mu.cpu().numpy()
    for attribute in attributes:
        values = compute(attribute.name, target, dataset.vocab, dataset.grid)
        result[f"val_spearman_{attribute.name}"] = spearman(mu_np[:, attribute.dim], values)
        result[f"val_along_{attribute.name}"] = along_axis(model, mu[:ALONG_PHRASES], attribute,
                                                           dataset)
    model.train()  # eval mode up to here: the sweeps decode as the exported model does
    return result


ALONG_PHRASES = 256
ALONG_OFFSETS = np.linspace(-AXIS_SPAN, AXIS_SPAN, 9)


@torch.no_grad()
def along_axis(model: GLSRVAE, mu: torch.Tensor, attribute: RegularisedAttribute,
               dataset: Dataset) -> float:
    """Mean per-phrase Spearman between the axis position and the attribute of the argmax
    decode (as played) along it: glsr-eval's spearman_along_axis on fewer phrases and points.
    The training objective only sees expectations, which can move with no argmax moving."""
    offsets = torch.as_tensor(ALONG_OFFSETS, dtype=mu.dtype, device=mu.device)
    z = mu[:, None, :].repeat(1, len(offsets), 1)  # (P, S, d)
    z[:, :, attribute.dim] += offsets
    logits = model.decode(z.reshape(-1, z.shape[-1]))  # (P * S, L, K)
    tokens = logits_to_tokens(logits.cpu().numpy())
    values = compute(attribute.name, tokens, dataset.vocab, dataset.grid).reshape(len(mu), -1)
    return mean_row_spearman(ALONG_OFFSETS, values)


# ---------------------------------------------------------------- the loop


@dataclass
class State:
    step: int = 0
    epoch: int = 0
    position: int = 0
    best: float = float("inf")
    bad_evals: int = 0
    seconds: float = 0.0


@functools.lru_cache(maxsize=2)
def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def next_batch(train: torch.Tensor, state: State, config: Config, runtime: Runtime
               ) -> torch.Tensor:
    """This rank's share of the next global batch; the order is reproducible from the state."""
    size = config.train.batch_size
    if state.position + size > len(train):
        state.epoch, state.position = state.epoch + 1, 0
    order = epoch_order(len(train), config.train.seed, state.epoch)
    indices = order[state.position: state.position + size][runtime.rank:: runtime.world]
    state.position += size
    return train[torch.from_numpy(indices)]


class Stop(Exception):
    """SIGTERM or SIGINT (also where a shell ignores SIGINT for background jobs)."""


def raise_stop(signum, frame) -> None:
    raise Stop()


@dataclass
class Run:
    config: Config
    out: Path
    runtime: Runtime
    dataset: Dataset
    train: torch.Tensor
    val: torch.Tensor
    model: GLSRVAE
    optimizer: torch.optim.Optimizer
    attributes: list[RegularisedAttribute]
    state: State
    saved_step: int = -1
    provenance: dict = field(default_factory=dict)

    def checkpoint(self, name: str = "latest.pt") -> None:
        """Save on rank 0; saving latest.pt twice at one step would make previous.pt a copy."""
        if not self.runtime.main or (name == "latest.pt" and self.saved_step == self.state.step):
            return
        save_checkpoint(self.out, name, self.payload())
        if name == "latest.pt":
            self.saved_step = self.state.step

    def payload(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "model_args": self.model.args.to_dict(),
            "config": self.config.to_dict(),
            "vocab": [self.dataset.vocab.low, self.dataset.vocab.high],
            "grid": [self.dataset.grid.steps_per_beat, self.dataset.grid.beats_per_bar],
            "attributes": [a.__dict__ for a in self.attributes],
            "state": self.state.__dict__,
            "provenance": self.provenance,
        }

    def log(self, record: dict) -> None:
        """Append one line with a single write: a kill leaves whole lines or a torn last one,
        which ``read_metrics`` skips."""
        if self.runtime.main:
            line = (json.dumps(record) + "\n").encode()
            descriptor = os.open(self.out / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                 0o644)
            try:
                os.write(descriptor, line)
            finally:
                os.close(descriptor)


def train_loop(run: Run, max_steps: int, max_minutes: float) -> str:
    """Train until max_steps, early stop or the time limit; returns why it stopped."""
    config, state = run.config, run.state
    pitches = torch.from_numpy(run.dataset.vocab.pitch_table()).to(run.runtime.device)
    started, seconds_before = time.perf_counter(), state.seconds
    bar = tqdm(total=max_steps, initial=state.step, unit="step", disable=not run.runtime.main,
               dynamic_ncols=True, smoothing=0.05, mininterval=2.0)
    while state.step < max_steps:
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate(state.step, config)
        batch = next_batch(run.train, state, config, run.runtime).to(run.runtime.device)
        altered, mask = altered_batch(batch, config, state.step, pitches)
        result = objective(run.model, altered, run.attributes, config, state.step, pitches,
                           originals=batch, altered=mask)
        run.optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        all_reduce_gradients(run.model, run.runtime)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.train.grad_clip)
        run.optimizer.step()
        state.step += 1
        state.seconds = seconds_before + time.perf_counter() - started
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in result.parts.items()
                         if k in ("nll", "kl") or k.startswith("slope_")}, refresh=False)
        if state.step % config.train.eval_every == 0 or state.step == max_steps:
            if evaluate_and_track(run, result.parts):
                bar.close()
                return "early stop"
        if state.step % config.train.checkpoint_every == 0:
            run.checkpoint()
        if max_minutes and state.seconds > max_minutes * 60:
            bar.close()
            if state.step % config.train.eval_every:
                evaluate_and_track(run, result.parts)
            run.checkpoint()
            return "time limit"
    bar.close()
    run.checkpoint()
    return "max steps"


def evaluate_and_track(run: Run, train_parts: dict) -> bool:
    """Evaluate, log, keep best.pt; True when early stopping says to stop."""
    state = run.state
    record = {"step": state.step, "epoch": state.epoch, "seconds": round(state.seconds, 1),
              "lr": learning_rate(state.step, run.config),
              **{f"train_{k}": v for k, v in train_parts.items()}}
    if run.runtime.main:
        record.update(evaluate(run.model, run.val, run.dataset, run.attributes, run.config))
        tqdm.write(summary_line(record))
    stop = False
    if run.runtime.main and state.step >= run.config.anneal_end():
        if record["val_objective"] < state.best:
            state.best, state.bad_evals = record["val_objective"], 0
            run.checkpoint("best.pt")
        else:
            state.bad_evals += 1
        stop = state.bad_evals >= run.config.train.patience
    run.log(record)
    if run.runtime.world > 1:
        flag = torch.tensor([int(stop)], device=run.runtime.device)  # nccl: device tensors
        dist.broadcast(flag, 0)
        stop = bool(flag.item())
    return stop


def summary_line(record: dict) -> str:
    return (f"step {record['step']}: val nll {record['val_nll']:.2f} kl {record['val_kl']:.2f} "
            f"acc {record['val_recon_accuracy']:.3f} non-hold "
            f"{record['val_recon_accuracy_nonhold']:.3f} "
            f"spearman {prefixed(record, 'val_spearman_')} along {prefixed(record, 'val_along_')}")


def prefixed(record: dict, prefix: str) -> str:
    """'notes +0.98 register +0.95' for the record's keys that start with ``prefix``."""
    return " ".join(f"{k.removeprefix(prefix)} {v:+.2f}" for k, v in record.items()
                    if k.startswith(prefix)) or "-"


# ---------------------------------------------------------------- building a run


def load_windows(config: Config, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    train, val = dataset.windows("train"), dataset.windows("val")
    rng = np.random.default_rng(config.train.seed)
    if config.data.max_windows:
        train = train[rng.permutation(len(train))[: config.data.max_windows]]
    val = val[rng.permutation(len(val))[: config.train.eval_windows]]
    return train, val


def make_run(config: Config, out: Path, runtime: Runtime, resume: dict | None,
             init: dict | None = None) -> Run:
    dataset = build_for(config.data, progress=runtime.main)
    train, val = load_windows(config, dataset)
    if init is not None:  # a fine-tune on a few tunes: smaller batches, train as val if need be
        val = val if len(val) else train[: config.train.eval_windows]
        config.train.batch_size = max(1, min(config.train.batch_size, len(train)))
        config.glsr.batch = min(config.glsr.batch, config.train.batch_size)
    if len(train) < config.train.batch_size or len(val) == 0:
        raise ConfigError(f"too little data: {len(train)} train / {len(val)} val windows")
    torch.manual_seed(config.train.seed + runtime.rank)
    args = ModelArgs(vocab_size=dataset.vocab.size, seq_len=config.data.seq_len,
                     **config.model.__dict__)
    model = GLSRVAE(args).to(runtime.device)
    if init is not None:  # fine-tuning: weights only, a fresh optimiser and schedule
        check_same_data(init, dataset.vocab)
        try:
            model.load_state_dict(init["model"])
        except RuntimeError:
            raise ConfigError("--init: that checkpoint's model has another shape than "
                              "[model] here") from None
    if runtime.world > 1:  # every rank starts from rank 0's weights
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr,
                                 weight_decay=config.train.weight_decay)
    attributes = regularised_attributes(config, train, dataset)
    if init is not None and init.get("attributes") and config.regularize:
        # the axes keep their meaning: a knob moves the same attribute at the same rate
        attributes = [RegularisedAttribute(**a) for a in init["attributes"]]
    state = State()
    if resume is not None:
        check_same_data(resume, dataset.vocab)
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        state = State(**resume["state"])
        attributes = [RegularisedAttribute(**a) for a in resume["attributes"]]
    return Run(config, out, runtime, dataset, torch.from_numpy(train),
               torch.from_numpy(val).to(runtime.device), model, optimizer, attributes, state)


def check_same_data(checkpoint: dict, vocab: Vocabulary) -> None:
    if list(checkpoint["vocab"]) != [vocab.low, vocab.high]:
        raise ConfigError("the dataset's pitch range changed since this run started; "
                          "start a new run")


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glsr-train", description=__doc__)
    parser.add_argument("--config", type=Path, help="training TOML (presets/train/*.toml)")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--init", type=Path, metavar="CHECKPOINT",
                        help="start a new run from these weights (fine-tuning)")
    parser.add_argument("--max-steps", type=int, help="override train.max_steps")
    parser.add_argument("--max-minutes", type=float, help="override train.max_minutes")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--export", type=Path, metavar="DIR",
                        help="model directory to export best.pt to at the end (default: "
                             "OUT/model)")
    parser.add_argument("--no-export", action="store_true", help="train only")
    parser.add_argument("--regularize", choices=["glsr", "none"], default=None,
                        help="'none' trains the unregularised baseline")
    parser.add_argument("--corpus", action="append", metavar="DIR",
                        help="fine-tune on your own melodies (MIDI/MusicXML/ABC files under "
                             "DIR; repeatable) from the default model, or --init MODEL_DIR; "
                             "writes OUT/fit-report.md")
    parser.add_argument("--from-scratch", action="store_true",
                        help="with --corpus: train the melody recipe (or --config) on DIR alone")
    args = parser.parse_args(argv)
    if args.from_scratch and not args.corpus:
        parser.error("--from-scratch goes with --corpus")
    return args


def resolve_config(args: argparse.Namespace) -> tuple[Config, dict | None]:
    """The config to train with and the checkpoint to resume from (None for a new run)."""
    if (args.resume and not (args.out / "latest.pt").exists()
            and (args.out / FIRST_STAGE / "latest.pt").exists()):
        if args.config is None:
            raise ConfigError(f"{args.out} stopped in its first stage: run the same command "
                              "again (with its --config) to go on there")
        args.resume = False  # stopped in its first stage: a new run finishes that stage first
    if args.resume:
        checkpoint = load_latest(args.out)
        config = config_module.from_dict(checkpoint["config"])
    else:
        if args.config is None:
            raise ConfigError("--config is required for a new run")
        if (args.out / "latest.pt").exists():
            raise ConfigError(f"{args.out} already holds a run; add --resume or choose "
                              "another --out")
        checkpoint, config = None, config_module.load(args.config)
    if args.regularize is not None:
        config.regularize = args.regularize == "glsr"
    if args.max_steps is not None:
        config.train.max_steps = args.max_steps
    if args.max_minutes is not None:
        config.train.max_minutes = args.max_minutes
    return config, checkpoint


def read_metrics(path: Path) -> list[dict]:
    """The whole records of a metrics log; a line torn by a kill is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def forget_metrics_after(path: Path, step: int) -> None:
    """Drop log lines newer than the checkpoint we resume from (they will be written again),
    and any torn line; rewritten atomically."""
    if not path.exists():
        return
    kept = [record for record in read_metrics(path) if record["step"] <= step]
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(json.dumps(record) + "\n" for record in kept))
    os.replace(temporary, path)


def run_training(args: argparse.Namespace, config: Config | None = None,
                 init: dict | None = None) -> int:
    """Train (or resume) and export. ``config`` and ``init`` come ready from a fine-tune."""
    config, checkpoint = (config, None) if config is not None else resolve_config(args)
    runtime = setup_runtime(args.device)
    if runtime.main:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "config.json").write_text(json.dumps(
            {**config.to_dict(), "digest": config.digest()}, indent=2))
    if checkpoint is None and init is None and not args.init and config.train.first_stage:
        code = train_first_stage(args, config)
        if code != 0:
            return code
    if init is None and args.init and checkpoint is None:
        init = load_checkpoint(args.init)
    run = make_run(config, args.out, runtime, checkpoint, init)
    run.provenance = (checkpoint or {}).get("provenance") or provenance(
        config, args.config, run.dataset, runtime.device, args.init, init)
    if runtime.main and checkpoint is not None:
        forget_metrics_after(args.out / "metrics.jsonl", run.state.step)
    if runtime.main:
        print(f"glsr-train: {len(run.train)} train / {len(run.val)} val windows, "
              f"{sum(p.numel() for p in run.model.parameters()) / 1e6:.2f} M parameters, "
              f"device {runtime.device}, {runtime.world} process(es), "
              f"GLSR {[(a.name, a.dim, round(a.mu, 3), round(a.sigma, 3)) for a in run.attributes]}"
              f"{f', resuming at step {run.state.step}' if checkpoint else ''}", flush=True)
    previous = {sig: signal.signal(sig, raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        reason = train_loop(run, config.train.max_steps, config.train.max_minutes)
    except Stop:
        run.checkpoint()
        if runtime.main:
            print(f"\nglsr-train: stopped at step {run.state.step}; continue with --resume",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not (args.out / "best.pt").exists():
        run.checkpoint("best.pt")  # runs shorter than the annealing still export something
    divergence = rank_divergence(run.model, runtime)
    if runtime.world > 1 and runtime.main:
        print(f"glsr-train: parameters on {runtime.world} ranks differ by at most "
              f"{divergence:.3g}", flush=True)
    if divergence > RANK_TOLERANCE:
        print("glsr-train: data-parallel ranks diverged (gradients were not averaged)",
              file=sys.stderr)
        return EXIT_DIVERGED
    if runtime.main:
        print(f"glsr-train: {reason} at step {run.state.step} after "
              f"{run.state.seconds / 60:.1f} min; run in {args.out}", flush=True)
    if runtime.main and not args.no_export:
        return export_model(args.out, args.export or args.out / "model")
    return 0


FIRST_STAGE = "first-stage"  # the folder of OUT a two-stage recipe's first run trains in


def train_first_stage(args: argparse.Namespace, config: Config) -> int:
    """Train (or finish) the recipe ``[train] first_stage`` names in OUT/first-stage and point
    ``args.init`` at its best.pt. A finished first stage is not trained again."""
    recipe = Path(args.config).parent / config.train.first_stage
    stage = argparse.Namespace(**{**vars(args), "config": recipe, "out": args.out / FIRST_STAGE,
                                  "init": None, "export": None, "no_export": True,
                                  "max_steps": None, "max_minutes": None})
    done = stage.out / "finished"
    if not done.exists():
        stage.resume = (stage.out / "latest.pt").exists()
        print(f"glsr-train: first stage {recipe} in {stage.out}"
              f"{' (resuming)' if stage.resume else ''}", flush=True)
        code = run_training(stage)
        if code != 0:
            return code
        done.write_text(f"{recipe}\n")
    args.init = stage.out / "best.pt"
    print(f"glsr-train: second stage from {args.init}", flush=True)
    return 0


def export_model(run: Path, out: Path) -> int:
    """Export the run's best.pt to an ONNX model directory (glsr-export's work)."""
    from .export import ParityError, export  # export imports this module

    started = time.perf_counter()
    try:
        info = export(run, out)
    except ParityError as error:
        print(f"glsr-train: not exported: {error}", file=sys.stderr)
        return EXIT_PARITY
    print(f"glsr-train: exported step {info['training']['steps']} to {out} in "
          f"{time.perf_counter() - started:.0f} s")
    return 0


def fine_tune(args: argparse.Namespace) -> int:
    """``--corpus DIR``: train from the base model's weights (or the recipe, from scratch) on
    the folder, export, and write the fit report."""
    started = time.perf_counter()
    folders = [str(Path(folder)) for folder in args.corpus]
    weights, base, base_dir = finetune.base_weights(args.init)
    if not args.resume and (args.out / "latest.pt").exists():
        raise ConfigError(f"{args.out} already holds a run; add --resume or choose another --out")
    if args.resume:
        args.init = None  # the run's checkpoint holds everything
        code = run_training(args)
    else:
        if args.from_scratch:
            config, init = finetune.scratch_config(args.config or finetune.default_recipe(),
                                                   folders), None
        else:
            config, init = finetune.fine_tune_config(base, folders, args.max_steps,
                                                     args.max_minutes), base
        if args.regularize is not None:
            config.regularize = args.regularize == "glsr"
        args.init = weights if init is not None else None
        code = run_training(args, config, init)
    if code != 0 or args.no_export:
        return code
    model_dir = args.export or args.out / "model"
    report = finetune.write_fit_report(args.out, model_dir, base_dir, str(base_dir or weights),
                                       time.perf_counter() - started)
    print(f"glsr-train: held-out accuracy {finetune.before_after(report)}; report in "
          f"{args.out / 'fit-report.md'}")
    for note in report["warnings"]:
        print(f"glsr-train: warning: {note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.corpus:
            return fine_tune(args)
        return run_training(args)
    except (ConfigError, CheckpointError, CorpusError, ModelError) as error:
        print(f"glsr-train: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
