"""Golden runs: the training objective pinned to 1e-6 across refactors.

A fixed-seed run of each shipped recipe's model, terms and weights (its schedule a hundred
times faster, on 2,048 Bach windows, one thread) must log the same loss terms and validation
numbers as when the numbers in ``tests/golden/expected*.json`` were recorded. Each file is one
kind of CPU's numbers (``expected.json`` the first; its CPU was not named): their float kernels
differ (an AMD EPYC's run leaves the first set by 2e-5 at step 25 and by 20 % at step 40, the
same code), so a run must match one recorded set, to 1e-6. Regenerate them only for a change
that is meant to change training, on every kind, and say so in its commit; on a new kind of
CPU, record its set once with the code that landed:

    python tests/test_golden.py --record
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
RECIPES = {"melody": "melody.toml", "bach": "bach.toml"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: sums in one order, bit for bit
UNPINNED = {"seconds"}  # wall time


def train(recipe: str, out: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "glsr_train.train", "--config", str(GOLDEN / recipe),
         "--out", str(out), "--no-export", "--processes", "1"],
        capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def logged(run: Path) -> list[list[dict]]:
    """Each stage's metrics records, first stage first (OUT/stages/1-NAME ..., then OUT)."""
    logs = [*sorted((run / "stages").glob("*/metrics.jsonl")), run / "metrics.jsonl"]
    return [[json.loads(line) for line in log.read_text().splitlines()] for log in logs]


def pinned(stages: list[list[dict]]) -> list[list[dict]]:
    return [[{k: v for k, v in record.items() if k not in UNPINNED} for record in stage]
            for stage in stages]


def differences(got: list[list[dict]], expected: list[list[dict]]) -> list[str]:
    """Where ``got`` leaves ``expected`` by more than 1e-6 (empty: the same run)."""
    if [len(stage) for stage in got] != [len(stage) for stage in expected]:
        return ["a different number of records"]
    found = []
    for got_stage, expected_stage in zip(got, expected, strict=True):
        for got_record, expected_record in zip(got_stage, expected_stage, strict=True):
            if sorted(got_record) != sorted(expected_record):
                return [f"step {expected_record['step']}: other keys"]
            found += [f"step {expected_record['step']}: {key}"
                      for key, value in expected_record.items()
                      if got_record[key] != pytest.approx(value, rel=1e-6, abs=1e-6)]
    return found


def recorded_sets() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text())
            for path in sorted(GOLDEN.glob("expected*.json"))}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_fixed_seed_run_logs_the_recorded_numbers(name, tmp_path):
    train(RECIPES[name], tmp_path / "run")
    got = pinned(logged(tmp_path / "run"))
    misses = {file: differences(got, numbers[name]) for file, numbers in recorded_sets().items()}
    assert any(not found for found in misses.values()), {
        file: found[:3] for file, found in misses.items()}


def record() -> None:
    import tempfile

    numbers = {}
    for name, recipe in RECIPES.items():
        with tempfile.TemporaryDirectory() as folder:
            train(recipe, Path(folder) / "run")
            numbers[name] = pinned(logged(Path(folder) / "run"))
    (GOLDEN / f"expected-{cpu_kind()}.json").write_text(json.dumps(numbers, indent=1) + "\n")


def cpu_kind() -> str:
    """'amd-epyc', say: the CPU's model name, as a file name."""
    import platform
    import re

    names = [line.split(":", 1)[1] for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")] if Path("/proc/cpuinfo").exists() else []
    name = names[0] if names else platform.processor() or platform.machine()
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    record()
