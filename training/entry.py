"""Console entry points of the training commands, importable without the [train] extra.

A runtime-only install (``pip install glsr-live``) still gets these scripts; without torch and
music21 they say what to install in one line instead of a ModuleNotFoundError traceback.
"""

from __future__ import annotations

import importlib
import sys

EXIT_USAGE = 2
TRAIN_MODULES = ("torch", "music21", "onnx", "matplotlib", "tqdm")


def run(program: str, module: str) -> int:
    try:
        main = importlib.import_module(f"glsr_train.{module}").main
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in TRAIN_MODULES:
            raise
        print(f"{program}: needs the training extra ({error.name} is missing): "
              "pip install 'glsr-live[train]'", file=sys.stderr)
        return EXIT_USAGE
    return main()


def train() -> int:
    return run("glsr-train", "train")


def export() -> int:
    return run("glsr-export", "export")


def evaluate() -> int:
    return run("glsr-eval", "evaluate")


def dataset() -> int:
    return run("glsr-dataset", "dataset_cli")
