"""glsr-train --corpus DIR: fine-tuning on a musician's own folder, and the fit report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_walk_tunes
from glsr_train.checkpoint import load_checkpoint
from glsr_train.config import Ramp, load
from glsr_train.finetune import (
    FINE_TUNE_LR,
    fine_tune_config,
    fine_tune_steps,
    shrunken_knobs,
)

from glsr_live.catalog import resolve_model
from glsr_live.model import Model

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
GLSR_TRAIN = [sys.executable, "-m", "glsr_train.train"]


def write_tunes(folder: Path, count: int, seed: int = 1) -> None:
    write_walk_tunes(folder, count, seed, start=67, pitches=(60, 79), leap=3, stem="tune")


def test_fine_tune_on_a_small_folder_exports_a_model_and_a_fit_report(tmp_path):
    folder = tmp_path / "mine"
    write_tunes(folder, 12)
    (folder / "broken.mid").write_bytes(b"MThd garbage")
    run = tmp_path / "run"
    done = subprocess.run([*GLSR_TRAIN, "--corpus", str(folder), "--out", str(run),
                           "--max-steps", "4"], capture_output=True, text=True, env=ENV,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fit-report.md" in done.stdout and "warning: only 12 tunes" in done.stdout
    report = json.loads((run / "fit-report.json").read_text())
    assert report["files_read"] == 12
    assert "not a readable MIDI file" in report["files_skipped"][str(folder / "broken.mid")]
    assert sum(report["tunes_per_split"].values()) == 12
    assert report["phrases_per_split"]["train"] > 0
    for side in ("before", "after"):
        assert 0 <= report[side]["recon_accuracy"] <= 1
        assert set(report[side]["axes"]) == set(report["after"]["axes"])
    assert any("too few" in note for note in report["warnings"])
    markdown = (run / "fit-report.md").read_text()
    assert "| reconstruction accuracy |" in markdown and "broken.mid" in markdown
    assert "| notes knob's ends (change in notes) |" in markdown
    for side in ("before", "after"):
        assert all(len(axis["knob_ends"]) == 2 for axis in report[side]["axes"].values())
    # the fine-tune keeps the base model's pitch range and axes, and says where it started
    base, tuned = Model(resolve_model(None)), Model(run / "model")
    assert tuned.info.vocab == base.info.vocab
    assert {n: (a.dim, a.mu) for n, a in tuned.info.axes.items()} == {
        n: (a.dim, a.mu) for n, a in base.info.axes.items()}
    # knob travel is in spreads of the codes: a folder's narrow spread would shrink every knob
    np.testing.assert_array_equal(tuned.info.latent.std, base.info.latent.std)
    assert json.loads((run / "model" / "model.json").read_text())["latent_stats_from"] == "base"
    chain = load_checkpoint(run / "best.pt")["provenance"]["init_chain"]
    assert chain[0]["checkpoint"].endswith("weights.pt")


def test_fine_tune_config_starts_every_term_at_its_final_weight():
    recipe = load(Path(__file__).resolve().parent.parent / "presets/train/melody.toml")
    base = {"config": recipe.to_dict(), "vocab": [50, 86]}
    config = fine_tune_config(base, ["/songs"], None, None)
    assert config.data.corpus == ["/songs"] and config.data.vocab == [50, 86]
    for table, given in ((config.schedule, recipe.schedule), (config.augment, recipe.augment)):
        for term, ramp in vars(table).items():
            if isinstance(ramp, Ramp):
                assert ramp.start == 0 and ramp.ramp == 0
                assert ramp.value == getattr(given, term).value, term
    assert (config.train.lr, config.train.lr_final) == FINE_TUNE_LR
    assert config.train.max_minutes <= 9 and config.train.decay_in_time  # within 10 minutes
    tuned = fine_tune_config(base, ["/songs"], None, None, lr=1e-3)
    assert tuned.train.lr == 1e-3 and tuned.train.lr_final == pytest.approx(1e-4)


def test_corpus_without_usable_files_is_one_line(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    done = subprocess.run([*GLSR_TRAIN, "--corpus", str(folder), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_knob_whose_reach_shrank_is_warned_about():
    base = {"axes": {"notes": {"knob_ends": [-8.0, 10.0]}, "register": {"knob_ends": [-5.0, 5.0]}}}
    after = {"axes": {"notes": {"knob_ends": [-7.0, 7.0]}, "register": {"knob_ends": [-4.5, 6.0]}}}
    (note,) = shrunken_knobs(base, after)  # 7 of 10 is under 80 %; register kept its reach
    assert note.startswith("the notes knob's reach shrank") and "+10.0" in note
    assert shrunken_knobs(None, after) == []


def test_a_fine_tune_takes_twenty_passes_over_the_folder_within_its_limits():
    assert fine_tune_steps(3500, 128) == 547  # 50 tunes: about 3,500 windows
    assert fine_tune_steps(600, 128) == 300  # 8 tunes: the fewest, about a minute
    assert fine_tune_steps(10**6, 128) == 1500


def test_a_folder_too_small_for_val_tunes_still_exports(tmp_path):
    """One tune: its family lands in train, training validates on train windows, and so
    does the export's parity check (it once met an empty val split and crashed)."""
    folder = tmp_path / "few"
    write_tunes(folder, 1, seed=5)
    run = tmp_path / "run"
    done = subprocess.run([*GLSR_TRAIN, "--corpus", str(folder), "--out", str(run),
                           "--max-steps", "3", "--processes", "1"], capture_output=True,
                          text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert (run / "model" / "decoder.onnx").exists()
    report = json.loads((run / "fit-report.json").read_text())
    assert report["tunes_per_split"]["val"] == 0


def test_a_learning_rate_that_is_not_positive_is_refused_in_one_line(tmp_path):
    done = subprocess.run([*GLSR_TRAIN, "--out", str(tmp_path / "r"), "--lr", "-1"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 2 and "--lr: must be a positive number" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_frozen_encoder_keeps_its_weights_and_the_decoder_learns(tmp_path):
    """--freeze encoder: the base's encoder comes out bit for bit, the decoder does not."""
    folder = tmp_path / "mine"
    write_tunes(folder, 6, seed=3)
    run = tmp_path / "run"
    done = subprocess.run([*GLSR_TRAIN, "--corpus", str(folder), "--out", str(run),
                           "--max-steps", "3", "--processes", "1", "--freeze", "encoder",
                           "--no-export"], capture_output=True, text=True, env=ENV,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    base = load_checkpoint(resolve_model(None) / "weights.pt")["model"]
    tuned = load_checkpoint(run / "latest.pt")
    assert tuned["config"]["train"]["freeze"] == ["encoder"]
    for name, weights in tuned["model"].items():
        same = bool((weights == base[name]).all())
        assert same == name.startswith(("embed.", "encoder.", "to_mu.", "to_logvar.")), name
    refused = subprocess.run([*GLSR_TRAIN, "--out", str(run), "--freeze", "encoder",
                              "--config", "presets/train/tiny.toml"], capture_output=True,
                             text=True, env=ENV, timeout=120)
    assert refused.returncode == 2 and "--freeze goes with --corpus" in refused.stderr


def test_a_waltz_jig_fine_tune_on_four_four_tunes_says_why_it_has_no_data(tmp_path):
    folder = tmp_path / "reels"
    write_tunes(folder, 4, seed=2)  # MIDI files in 4/4
    done = subprocess.run([*GLSR_TRAIN, "--corpus", str(folder), "--init", "waltz-jig",
                           "--out", str(tmp_path / "run"), "--processes", "1"],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "glsr-train: too little data: 0 train / 0 val windows of tunes in 3/4 or 6/8 (a "
        "file's first time signature)"]
