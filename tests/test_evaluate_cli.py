"""glsr-eval on a model trained on a mix of sources: per-source numbers, other models' splits,
and melodies from outside the training data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write_walk_tunes

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def write_walks(folder: Path, count: int, seed: int) -> None:
    write_walk_tunes(folder, count, seed, start=64 + seed, pitches=(55, 80), leap=4,
                     stem="walk")


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=ENV, timeout=600)


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A tiny three-axis model trained on two folders, with bar-line windows, like melody."""
    base = tmp_path_factory.mktemp("mixed")
    first, second, single = base / "first", base / "second", base / "single"
    write_walks(first, 30, seed=1)
    write_walks(second, 30, seed=2)
    write_walks(single, 1, seed=4)  # one tune: all in train, like music21's Nottingham
    recipe = (ROOT / "presets/train/tiny.toml").read_text()
    recipe = recipe.replace('corpus = "bach"', f'corpus = ["{first}", "{second}", "{single}"]\n'
                            'windows = "bars"\nmax_shift = 2')
    recipe = recipe.replace('attributes = [{ name = "notes", dim = 0 }, { name = "register", '
                            'dim = 1 }]', 'attributes = [{ name = "notes", dim = 0 }, '
                            '{ name = "register", dim = 1 }, { name = "range", dim = 2 }]')
    config = base / "mixed.toml"
    config.write_text(recipe)
    done = run("glsr_train.train", "--config", str(config), "--out", str(base / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    return base / "run" / "model", first, second, single


def evaluate(model: Path, out: Path, *args: str) -> dict:
    done = run("glsr_train.evaluate", str(model), "--out", str(out), "--no-figures",
               "--phrases", "20", *args)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / "metrics.json").read_text())


def test_a_mixed_model_is_reported_whole_and_per_source(mixed_model, tmp_path):
    model, first, second, single = mixed_model
    report = evaluate(model, tmp_path / "r", "--split", "val")
    assert set(report["per_corpus"]) == {str(first), str(second), str(single)}
    assert report["per_corpus"][str(single)] == {"windows": 0}
    whole = report["regularised"]
    parts = [report["per_corpus"][str(source)]["windows"] for source in (first, second)]
    assert sum(parts) == whole["windows"]
    assert set(whole["attributes"]) == {"notes", "register", "range"}
    assert "notes" in whole["attributes"]["range"]["cross_attribute"]


def test_melodies_from_elsewhere_are_measured_whole_and_in_their_own_keys(mixed_model,
                                                                          tmp_path):
    model, *_ = mixed_model
    elsewhere = tmp_path / "elsewhere"
    write_walks(elsewhere, 6, seed=3)
    report = evaluate(model, tmp_path / "r", "--melodies", str(elsewhere))
    assert report["split"] == "melodies"
    assert report["regularised"]["windows"] == 6 * 7  # 8 bars: 7 windows from bar lines
    assert "per_corpus" not in report and "unseen" not in report["regularised"]


def test_two_models_measured_on_one_models_split(tiny_model_dir, tmp_path):
    shipped = ROOT / "presets/models/bach-soprano"
    own = evaluate(shipped, tmp_path / "own", "--split", "val")
    other = evaluate(tiny_model_dir, tmp_path / "other", "--split", "val", "--windows-of",
                     str(shipped))
    assert other["regularised"]["windows"] == own["regularised"]["windows"]
    assert other["regularised"]["unseen_share"] == own["regularised"]["unseen_share"]


def test_a_source_the_model_never_saw_is_one_line(mixed_model, tmp_path):
    model, *_ = mixed_model
    done = run("glsr_train.evaluate", str(model), "--out", str(tmp_path), "--corpus", "essen")
    assert done.returncode == 2
    assert "not trained on 'essen'" in done.stderr and "Traceback" not in done.stderr


def write_abc_tune(path: Path, metre: str, bars: int) -> None:
    """An ABC tune of ``bars`` bars of eighths in ``metre`` (2/4: four to a bar)."""
    line = "|".join([{"2/4": "cdef", "4/4": "cdefgfed"}[metre]] * bars)
    path.write_text(f"X:1\nT:{path.stem}\nM:{metre}\nL:1/8\nK:C\n{line}|\n")


def test_melodies_of_one_metre_a_4_4_model_plays(mixed_model, tmp_path):
    """2/4 tunes, which a 4/4 model plays two bars to one of its own, are measured alone."""
    model, *_ = mixed_model
    folder = tmp_path / "tunes"
    folder.mkdir()
    write_abc_tune(folder / "two.abc", "2/4", 16)  # 64 steps of 4/4: bar lines every 8 steps
    write_abc_tune(folder / "four.abc", "4/4", 6)  # 96 steps, bar lines every 16
    two = evaluate(model, tmp_path / "two", "--melodies", str(folder), "--metre", "2/4")
    four = evaluate(model, tmp_path / "four", "--melodies", str(folder), "--metre", "4/4")
    assert two["regularised"]["windows"] == 16 - 4 + 1  # a window from each 2/4 bar line
    assert four["regularised"]["windows"] == 6 - 2 + 1
    done = run("glsr_train.evaluate", str(model), "--out", str(tmp_path / "x"), "--melodies",
               str(folder), "--metre", "6/8")
    assert done.returncode == 2 and "--metre 6/8: the model plays 4/4" in done.stderr
