"""One stage of training: build the run (data, model, optimiser, axes), then step, evaluate
and checkpoint until max_steps, early stopping or the time limit."""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from glsr_live.attributes import compute
from glsr_live.tokens import Grid, Vocabulary

from .augment import augmented
from .checkpoint import save_checkpoint
from .config import Config, ConfigError
from .dataset import Dataset, build_for
from .distributed import (
    Runtime,
    all_reduce_gradients,
    barrier,
    broadcast_flag,
    broadcast_weights,
    slowest_seconds,
)
from .glsr import RegularisedAttribute
from .model import GLSRVAE, state_for_phrase
from .objective import Batch, Setup, Weights, objective
from .rhythm import rhythm_rows
from .rundir import append_metrics
from .validation import evaluate, summary_line


@dataclass
class State:
    step: int = 0
    epoch: int = 0
    position: int = 0
    best: float = float("inf")
    bad_evals: int = 0
    seconds: float = 0.0


@dataclass
class Run:
    config: Config
    out: Path
    runtime: Runtime
    dataset: Dataset
    train: torch.Tensor  # (N, L) training windows, on the CPU
    val: torch.Tensor  # (M, L) validation windows, on the device
    model: GLSRVAE
    optimizer: torch.optim.Optimizer
    attributes: list[RegularisedAttribute]
    state: State
    saved_step: int = -1
    provenance: dict = field(default_factory=dict)
    latent_stats: dict | None = None  # a fine-tune's base's, kept for the export

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
            "model_args": self.model.shape(),
            "config": self.config.to_dict(),
            "vocab": [self.dataset.vocab.low, self.dataset.vocab.high],
            "grid": [self.dataset.grid.steps_per_beat, self.dataset.grid.beats_per_bar],
            "attributes": [a.__dict__ for a in self.attributes],
            "state": self.state.__dict__,
            "provenance": self.provenance,
            **({"latent_stats": self.latent_stats} if self.latent_stats else {}),
        }

    def log(self, record: dict) -> None:
        if self.runtime.main:
            append_metrics(self.out, record)


# ---------------------------------------------------------------- building a run


def make_run(config: Config, out: Path, runtime: Runtime, resume: dict | None,
             init: dict | None = None) -> Run:
    """The run of one stage: fresh, from ``init``'s weights (a fine-tune or a later stage:
    a new optimiser and schedule), or resumed from a checkpoint."""
    dataset = dataset_for(config, runtime)
    train, val = load_windows(config, dataset)
    if init is not None:  # a fine-tune on a few tunes: smaller batches, train as val if need be
        val = val if len(val) else train[: config.train.eval_windows]
        config.train.batch_size = max(1, min(config.train.batch_size, len(train)))
        config.glsr.batch = min(config.glsr.batch, config.train.batch_size)
    if len(train) < config.train.batch_size or len(val) == 0:
        metres = config.data.metres
        where = f" of tunes in {' or '.join(metres)} (a file's first time signature)" \
            if metres else ""
        raise ConfigError(f"too little data: {len(train)} train / {len(val)} val windows{where}")
    torch.manual_seed(config.train.seed + runtime.rank)
    model = GLSRVAE(config.model, dataset.vocab.size, config.data.seq_len).to(runtime.device)
    if init is not None:
        check_same_data(init, dataset.vocab)
        load_init(model, init, dataset.grid)
    broadcast_weights(model, runtime)
    model.freeze(config.train.freeze)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=config.train.lr,
                                 weight_decay=config.train.weight_decay)
    attributes = regularised_attributes(config, train, dataset)
    transfer = init is not None and is_transfer(init, dataset.grid)
    if transfer:
        init = {key: value for key, value in init.items()
                if key not in ("attributes", "latent_stats")}  # new phrases: axes of their own
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
               torch.from_numpy(val).to(runtime.device), model, optimizer, attributes, state,
               latent_stats=kept_latent_stats(resume, init))


def is_transfer(init: dict, grid: Grid) -> bool:
    """Whether ``init`` is a model of another phrase shape (a 4/4 model starting a 6/8 one)."""
    return (init["model_args"]["seq_len"] != grid.seq_len
            or list(init.get("grid", [grid.steps_per_beat, grid.beats_per_bar]))
            != [grid.steps_per_beat, grid.beats_per_bar])


def load_init(model: GLSRVAE, init: dict, grid: Grid) -> None:
    """``init``'s weights; those of another phrase shape laid onto this one by bar position."""
    state = init["model"]
    if is_transfer(init, grid):
        steps_per_beat, beats = init.get("grid", [4, 4])
        state = state_for_phrase(state, model, steps_per_beat * beats, grid.steps_per_bar)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise ConfigError("--init: that checkpoint's model has another shape than "
                          "[model] here") from None


def kept_latent_stats(resume: dict | None, init: dict | None) -> dict | None:
    """The base's latent statistics a run keeps: a fine-tune's (its axes are the base's),
    carried through a resume; None for a run that measures its own."""
    if resume is not None:
        return resume.get("latent_stats")
    if init is not None and init.get("attributes"):
        return init.get("latent_stats")
    return None


def dataset_for(config: Config, runtime: Runtime) -> Dataset:
    """The dataset, parsed by rank 0 alone: the other ranks read its cache."""
    if not runtime.main:
        barrier(runtime)
    dataset = build_for(config.data, progress=runtime.main)
    if runtime.main:
        barrier(runtime)
    return dataset


def load_windows(config: Config, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    train, val = dataset.windows("train"), dataset.windows("val")
    rng = np.random.default_rng(config.train.seed)
    if config.data.max_windows:
        train = train[rng.permutation(len(train))[: config.data.max_windows]]
    val = val[rng.permutation(len(val))[: config.train.eval_windows]]
    return train, val


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


def check_same_data(checkpoint: dict, vocab: Vocabulary) -> None:
    if list(checkpoint["vocab"]) != [vocab.low, vocab.high]:
        raise ConfigError("the dataset's pitch range changed since this run started; "
                          "start a new run")


# ---------------------------------------------------------------- the loop


def learning_rate(step: int, config: Config, seconds: float = 0.0) -> float:
    """Linear warm-up, then cosine decay from lr to lr_final over max_steps; with
    ``decay_in_time`` over max_minutes instead when the run will reach that first, so a run
    stopped by its time limit still ends at lr_final (``seconds``: the stage's so far)."""
    train = config.train
    warmup = min(train.warmup, train.max_steps // 10 + 1)
    if step < warmup:
        return train.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, train.max_steps - warmup))
    if train.decay_in_time and train.max_minutes:
        progress = max(progress, min(1.0, seconds / (train.max_minutes * 60)))
    return train.lr_final + 0.5 * (train.lr - train.lr_final) * (1 + math.cos(math.pi * progress))


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


def train_step(run: Run, setup: Setup) -> dict[str, float]:
    """One optimiser step on the next batch; the logged terms."""
    config, state, device = run.config, run.state, run.runtime.device
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate(state.step, config, state.seconds)
    batch = rhythm_rows(next_batch(run.train, state, config, run.runtime), config.augment,
                        state.step).to(device)
    tokens, altered = augmented(batch, config.augment, state.step, setup.pitches)
    losses = objective(run.model, Batch(tokens, batch, altered), Weights.at(config, state.step),
                       setup)
    run.optimizer.zero_grad(set_to_none=True)
    losses.total.backward()
    all_reduce_gradients(run.model, run.runtime)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.train.grad_clip)
    run.optimizer.step()
    state.step += 1
    return losses.logged()


def train_loop(run: Run, max_steps: int, max_minutes: float) -> str:
    """Train until max_steps, early stop or the time limit; returns why it stopped."""
    config, state = run.config, run.state
    pitches = torch.from_numpy(run.dataset.vocab.pitch_table()).to(run.runtime.device)
    setup = Setup.of(config, run.attributes, pitches, run.runtime.world)
    started, seconds_before = time.perf_counter(), state.seconds
    bar = tqdm(total=max_steps, initial=state.step, unit="step", disable=not run.runtime.main,
               dynamic_ncols=True, smoothing=0.05, mininterval=2.0)
    try:
        while state.step < max_steps:
            parts = train_step(run, setup)
            state.seconds = slowest_seconds(seconds_before + time.perf_counter() - started,
                                            run.runtime)
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in parts.items()
                             if k in ("nll", "kl") or k.startswith("slope_")}, refresh=False)
            if state.step % config.train.eval_every == 0 or state.step == max_steps:
                if evaluate_and_track(run, parts):
                    return "early stop"
            if state.step % config.train.checkpoint_every == 0:
                run.checkpoint()
            if max_minutes and state.seconds > max_minutes * 60:
                if state.step % config.train.eval_every:
                    evaluate_and_track(run, parts)
                run.checkpoint()
                return "time limit"
        run.checkpoint()
        return "max steps"
    finally:
        bar.close()


def evaluate_and_track(run: Run, train_parts: dict) -> bool:
    """Evaluate, log, keep best.pt; True when early stopping says to stop."""
    state = run.state
    record = {"step": state.step, "epoch": state.epoch, "seconds": round(state.seconds, 1),
              "lr": learning_rate(state.step, run.config, state.seconds),
              **{f"train_{k}": v for k, v in train_parts.items()}}
    stop = False
    if run.runtime.main:
        record.update(evaluate(run.model, run.val, run.dataset, run.attributes, run.config))
        tqdm.write(summary_line(record))
        if state.step >= run.config.anneal_end():
            if record["val_objective"] < state.best:
                state.best, state.bad_evals = record["val_objective"], 0
                run.checkpoint("best.pt")
            else:
                state.bad_evals += 1
            stop = state.bad_evals >= run.config.train.patience
    run.log(record)
    return broadcast_flag(stop, run.runtime)
