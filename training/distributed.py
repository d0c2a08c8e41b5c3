"""Data-parallel training: one process per core (or GPU), gradients averaged every step.

``glsr-train`` on a CPU starts one rank per core itself, the way torchrun does (env://
rendezvous on this machine: WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT), so a plain command
uses both cores of a laptop; under torchrun it is one of the ranks torchrun started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from .config import ConfigError


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
    """Single process, or one rank of a data-parallel job (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_name, local_rank)
    if world == 1:
        return Runtime(0, 1, device)
    if not dist.is_initialized():  # a staged recipe sets up once for all its stages
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return Runtime(dist.get_rank(), world, device)


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


def broadcast_weights(model: torch.nn.Module, runtime: Runtime) -> None:
    """Every rank starts from rank 0's weights."""
    if runtime.world > 1:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, 0)


def broadcast_flag(flag: bool, runtime: Runtime) -> bool:
    """Rank 0's ``flag`` on every rank."""
    if runtime.world == 1:
        return flag
    tensor = torch.tensor([int(flag)], device=runtime.device)  # nccl: device tensors
    dist.broadcast(tensor, 0)
    return bool(tensor.item())


def slowest_seconds(seconds: float, runtime: Runtime) -> float:
    """The largest ``seconds`` of any rank: one clock, so every rank stops (and sets its
    learning rate) at the same step."""
    if runtime.world == 1:
        return seconds
    tensor = torch.tensor([seconds], dtype=torch.float64, device=runtime.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def barrier(runtime: Runtime) -> None:
    if runtime.world > 1:
        dist.barrier()


def rank_divergence(model: torch.nn.Module, runtime: Runtime) -> float:
    """Max |difference| of any parameter between this rank and rank 0 (0.0 single-process).

    Ranks see different rows of each batch; only averaged gradients keep them equal, so a
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


# ---------------------------------------------------------------- one rank per core


def default_processes(device_name: str) -> int:
    """Ranks a plain command starts: one per core on a CPU; one (or torchrun's) on a GPU."""
    if "WORLD_SIZE" in os.environ:
        return 1  # started by torchrun (or by us): this process is one rank
    if device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available()):
        return 1
    return max(1, len(os.sched_getaffinity(0)))


RANK_GRACE_SECONDS = 5.0  # after one rank fails, for the others to end by themselves
RANK_STOP_SECONDS = 60.0  # after a SIGTERM, for a rank to save its checkpoint


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(module: str, argv: list[str], processes: int) -> int:
    """Run ``python -m module argv`` as ``processes`` ranks on this machine. Rank 0 speaks
    to the terminal; the others' output goes to a log each (a rank that fails while rank 0
    did not is named in one line). The exit code is that of the first rank, rank 0 first,
    that failed by itself (not one stopped because another failed). SIGINT and SIGTERM reach
    every rank once, so each saves its checkpoint."""
    port = free_port()
    logs = [None] + [tempfile.NamedTemporaryFile("w", prefix=f"glsr-rank{rank}-", suffix=".log",
                                                 delete=False) for rank in range(1, processes)]
    ranks = []
    for rank in range(processes):
        env = {**os.environ, "WORLD_SIZE": str(processes), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(processes),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        quiet = {} if logs[rank] is None else {"stdout": logs[rank], "stderr": logs[rank]}
        # a session of their own: a terminal's Ctrl-C reaches them once, through us
        ranks.append(subprocess.Popen([sys.executable, "-m", module, *argv], env=env,
                                      start_new_session=True, **quiet))

    def forward(signum, frame) -> None:
        for process in ranks:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stopped = wait_all(ranks)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return outcome(ranks, logs, stopped)


def wait_all(ranks: list[subprocess.Popen]) -> set[int]:
    """Wait for every rank; once one fails, give the rest a grace to end by themselves (a
    bad argument stops all ranks at once, each with its own exit code), then stop those
    still running (they would wait on the failed one forever), and kill any that a stop did
    not end. Returns the ranks stopped."""
    failed_at = None
    stopped: dict[int, float] = {}
    while any(process.poll() is None for process in ranks):
        for process in ranks:
            try:
                process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        now = time.monotonic()
        if failed_at is None and any(process.poll() not in (None, 0) for process in ranks):
            failed_at = now
        if failed_at is None or now - failed_at < RANK_GRACE_SECONDS:
            continue
        for rank, process in enumerate(ranks):
            if process.poll() is not None:
                continue
            if rank not in stopped:
                process.terminate()  # it saves its checkpoint on the way out
                stopped[rank] = now
            elif now - stopped[rank] > RANK_STOP_SECONDS:
                process.kill()  # blocked in a collective that will never complete
    return set(stopped)


def outcome(ranks: list[subprocess.Popen], logs: list, stopped: set[int] = frozenset()) -> int:
    """Rank 0's exit code (it said why), else the first failed rank's, named in one line.
    A rank we stopped because another failed is not the failure (its code is ours)."""
    for log in logs[1:]:
        log.close()
    failed = [rank for rank, process in enumerate(ranks)
              if process.returncode != 0 and rank not in stopped]
    code = ranks[failed[0]].returncode if failed else 0
    if failed and failed[0] != 0:
        print(f"glsr-train: rank {failed[0]} failed (exit {code}); its log: "
              f"{logs[failed[0]].name}", file=sys.stderr)
    for rank, log in enumerate(logs[1:], start=1):
        if not failed or rank != failed[0]:
            os.unlink(log.name)  # nothing to read there
    return code if code >= 0 else 128 - code  # killed by a signal: as a shell says it
