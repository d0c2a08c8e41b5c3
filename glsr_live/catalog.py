"""Installed presets: shipped models found by name, knob presets, one line per model.

The presets install with the package as ``glsr_live.presets`` (the repo's ``presets/``), found
with importlib.resources, so ``pip install glsr-live`` plays without a checkout.
``$GLSR_LIVE_PRESETS`` points somewhere else (a folder with ``models/`` and ``knobs/``).
"""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path

from .errors import ModelError
from .tokens import declared_metres, plays

PRESETS_ENV = "GLSR_LIVE_PRESETS"
DEFAULT_MODEL = "melody"
CHECKOUT_PRESETS = Path(__file__).resolve().parent.parent / "presets"


def presets_root() -> Path:
    """The presets folder: $GLSR_LIVE_PRESETS, else the installed package data."""
    if PRESETS_ENV in os.environ:
        return Path(os.environ[PRESETS_ENV])
    try:
        # a regular (unzipped) install: the Traversable is a real folder
        return Path(str(importlib.resources.files("glsr_live.presets")))
    except ModuleNotFoundError:  # a bare checkout on sys.path, never installed
        return CHECKOUT_PRESETS


def default_preset() -> Path:
    return presets_root() / "knobs" / "default.toml"


def resolve_preset(spec: str | Path | None) -> Path:
    """A knob preset from a file path, an installed preset's name ('units'), or the default."""
    if spec is None:
        return default_preset()
    path = Path(spec)
    if path.is_file() or path.suffix == ".toml":
        return path  # a missing .toml is reported by the preset loader, in one line
    installed = presets_root() / "knobs" / f"{spec}.toml"
    return installed if installed.is_file() else path


def installed_models() -> dict[str, Path]:
    """name -> model directory, for every shipped model (a folder with model.json)."""
    folder = presets_root() / "models"
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if (p / "model.json").is_file()}


def model_metres(path: Path) -> list[str]:
    """The time signatures a model directory's model.json says it plays ([] if unreadable)."""
    try:
        return declared_metres(json.loads((path / "model.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return []


def model_for_metre(metre: str | None) -> Path:
    """The default model, or for ``metre`` the installed one that plays it (the default first);
    the default if none does (then --metre's check says so in one line)."""
    default = resolve_model(None)
    if metre is None or plays(model_metres(default), metre):
        return default
    found = [path for path in installed_models().values() if plays(model_metres(path), metre)]
    return found[0] if found else default


def resolve_model(spec: str | Path | None) -> Path:
    """A model directory from a name (``bach-soprano``), a path, or None (the default)."""
    spec = DEFAULT_MODEL if spec is None else spec
    path = Path(spec)
    if path.is_dir():
        return path
    models = installed_models()
    if str(spec) in models:
        return models[str(spec)]
    names = ", ".join(models) or "none installed"
    raise ModelError(f"{spec}: no such model directory, and no installed model of that name "
                     f"(installed: {names})")


def directory_megabytes(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6


def headline_metrics(path: Path, info: dict) -> str:
    """The model card's test numbers (evaluation.json, written by glsr-eval), else the
    validation record in ``info`` (model.json)."""
    evaluation = path / "evaluation.json"
    if evaluation.is_file():
        try:
            report = json.loads(evaluation.read_text())["regularised"]
            notes = report["attributes"].get("notes", {})
            text = f"test acc {report['recon_accuracy']:.3f}"
            if notes:
                text += f", notes spearman {notes['spearman_along_axis']:.3f}"
            return text
        except (KeyError, TypeError, ValueError):
            return "evaluation.json unreadable"
    validation = info.get("metrics", {}).get("validation", {})
    accuracy = validation.get("val_recon_accuracy", validation.get("val_accuracy"))
    return f"val acc {accuracy:.3f}" if isinstance(accuracy, float) else "no metrics"


def model_line(name: str, path: Path) -> str:
    """One line: name, attributes with their latent dims, size, headline metrics."""
    try:
        info = json.loads((path / "model.json").read_text())
        axes = ", ".join(f"{a['name']}@z{a['dim']}" for a in info["attributes"])
        shape = f"{' and '.join(declared_metres(info))}, d={info['latent_dim']}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{name:14s} unreadable model.json ({path})"
    return (f"{name:14s} {axes or 'no regularised axes'}; {shape}; "
            f"{directory_megabytes(path):.1f} MB; {headline_metrics(path, info)}")
