"""Where a trained model came from: config file and hash, code commit, data, device, --init."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from pathlib import Path

import torch

from .config import Config
from .dataset import SPLIT_METHOD, Dataset

SOURCE = Path(__file__).resolve().parent.parent


def file_sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def commit() -> str:
    """The source tree's git commit, with '+dirty' when it has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(SOURCE), *args], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) if head else "unknown"


def data_fingerprint(dataset: Dataset) -> str:
    """A hash of every line and its split: same data and same split, same fingerprint."""
    digest = hashlib.sha1()
    for name, line, split in zip(dataset.names, dataset.lines, dataset.splits, strict=True):
        digest.update(f"{name}:{split}:".encode())
        digest.update(line.astype("int16").tobytes())
    return digest.hexdigest()[:16]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(config: Config, config_file: Path | None, dataset: Dataset,
               device: torch.device, init: Path | None, init_checkpoint: dict | None,
               stage: str = "", world: int = 1) -> dict:
    """What model.json records of the run. ``init_chain`` lists every run this one builds on
    (a staged recipe's earlier stages, nearest first)."""
    chain = []
    if init is not None:
        earlier = (init_checkpoint or {}).get("provenance", {})
        chain = [{"checkpoint": str(init), "config_file": earlier.get("config_file"),
                  "stage": earlier.get("stage", ""), "config_hash": earlier.get("config_hash"),
                  "commit": earlier.get("commit")},
                 *earlier.get("init_chain", [])]
    return {
        "config_file": str(config_file) if config_file else None,
        "config_file_sha1": file_sha1(config_file) if config_file else None,
        "stage": stage,
        "config_hash": config.digest(),
        "commit": commit(),
        "device": device_name(device),
        "processes": world,
        "torch": str(torch.__version__),  # a TorchVersion object would not load weights_only
        "data_fingerprint": data_fingerprint(dataset),
        "split_method": SPLIT_METHOD,
        "regularize": "glsr" if config.regularize else "none",
        "init_chain": chain,
    }
