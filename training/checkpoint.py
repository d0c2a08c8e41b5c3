"""Checkpoints written atomically, the previous one kept, loaded with weights_only=True."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """No usable checkpoint; the message is one line for the user."""


def save_checkpoint(folder: Path, name: str, payload: dict) -> None:
    """Write ``folder/name`` via a temp file + rename; latest.pt first moves to previous.pt."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    target = folder / name
    if name == "latest.pt" and target.exists():
        os.replace(target, folder / "previous.pt")
    os.replace(handle.name, target)


# Runs started before provenance stored str(torch.__version__) hold a TorchVersion (a str
# subclass): allow it, so their checkpoints load, resume and export.
torch.serialization.add_safe_globals([torch.torch_version.TorchVersion])


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(error).__name__})") from None


def load_latest(folder: Path) -> dict:
    """latest.pt, or previous.pt when latest is missing or damaged."""
    errors = []
    for name in ("latest.pt", "previous.pt"):
        try:
            return load_checkpoint(folder / name)
        except CheckpointError as error:
            errors.append(str(error))
    raise CheckpointError(f"nothing to resume in {folder}: " + "; ".join(errors))
