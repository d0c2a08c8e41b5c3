"""Golden runs: the training objective pinned to 1e-6 across refactors.

A fixed-seed run of each shipped recipe's model, terms and weights (its schedule a hundred
times faster, on 2,048 Bach windows, one thread) must log the same loss terms and validation
numbers as when the numbers in ``tests/golden/expected.json`` were recorded. Regenerate them
only for a change that is meant to change training, and say so in its commit:

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
EXPECTED = GOLDEN / "expected.json"
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


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_fixed_seed_run_logs_the_recorded_numbers(name, tmp_path):
    train(RECIPES[name], tmp_path / "run")
    got = pinned(logged(tmp_path / "run"))
    expected = json.loads(EXPECTED.read_text())[name]
    assert [len(stage) for stage in got] == [len(stage) for stage in expected]
    for got_stage, expected_stage in zip(got, expected, strict=True):
        for got_record, expected_record in zip(got_stage, expected_stage, strict=True):
            assert sorted(got_record) == sorted(expected_record)
            for key, value in expected_record.items():
                assert got_record[key] == pytest.approx(value, rel=1e-6, abs=1e-6), (
                    f"step {expected_record['step']}: {key}")


def record() -> None:
    import tempfile

    numbers = {}
    for name, recipe in RECIPES.items():
        with tempfile.TemporaryDirectory() as folder:
            train(recipe, Path(folder) / "run")
            numbers[name] = pinned(logged(Path(folder) / "run"))
    EXPECTED.write_text(json.dumps(numbers, indent=1) + "\n")


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    record()
