"""Metres: tunes tagged with their time signature, 24-step phrases cut on whole bars of 3/4 or
6/8, splits that agree with the 4/4 model's, a 4/4 model's weights laid onto 24 steps, and the
runtime choosing and writing the metre."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest
import torch
from glsr_train.config import ConfigError, DataConfig, ModelConfig
from glsr_train.corpus import score_file_melody
from glsr_train.dataset import DatasetSettings, build, dataset_settings, window_starts
from glsr_train.loop import is_transfer, load_init
from glsr_train.model import GLSRVAE

from glsr_live.catalog import model_for_metre
from glsr_live.midifile import read_metre, write_played
from glsr_live.model import parse_model_json
from glsr_live.tokens import Grid, plays

ROOT = Path(__file__).resolve().parents[1]

JIG = """X:1
T:A jig that turns into a reel
M:6/8
L:1/8
K:D
A | dfd cec | dfa agf | gbg faf | efe e2A | dfd cec | dfa agf | gbg fed | d3 d2 ||
M:4/4
|: d2fd A2FA | d2fd g2fg | a2fa gfed | cdef gfeg :|
"""


def write_walk(path: Path, seed: int, numerator: int, denominator: int) -> None:
    """A random walk of 16 to 100 eighth notes with a time-signature event."""
    rng = np.random.default_rng(seed)
    pitches = 60 + np.cumsum(rng.integers(-4, 5, int(rng.integers(16, 101)))) % 24
    midi = mido.MidiFile(ticks_per_beat=96)
    track = mido.MidiTrack([mido.MetaMessage("time_signature", numerator=numerator,
                                             denominator=denominator, time=0)])
    midi.tracks.append(track)
    for pitch in pitches:
        track.append(mido.Message("note_on", note=int(pitch), velocity=80, time=0))
        track.append(mido.Message("note_off", note=int(pitch), velocity=0, time=48))
    midi.save(path)


def test_a_tune_that_changes_metre_gives_windows_only_where_whole_bars_of_its_metre_fit(
        tmp_path):
    path = tmp_path / "jig.abc"
    path.write_text(JIG)
    settings = DatasetSettings(corpus=str(path), seq_len=24, beats_per_bar=3, windows="bars",
                               metres=("3/4", "6/8"))
    melody = score_file_melody(path, settings.parse_grid, None)
    assert melody.metre == "6/8"  # eight bars of 6/8 against four of 4/4
    bars = list(melody.bars)
    # the pickup bar padded to 12 steps; the last 6/8 bar is five eighths (it completes the
    # pickup), so the 4/4 part's bars start at 106
    assert bars[:12] == [0, 12, 24, 36, 48, 60, 72, 84, 96, 106, 122, 138]
    starts = list(window_starts(len(melody.line), settings, melody.bars))
    # 24-step windows from each 6/8 bar line whose next two bar lines are 12 and 24 steps on
    assert starts == [0, 12, 24, 36, 48, 60, 72]
    unchecked = DatasetSettings(corpus=str(path), seq_len=24, beats_per_bar=3, windows="bars")
    assert len(window_starts(len(melody.line), unchecked, melody.bars)) > len(starts)


def test_metre_datasets_keep_the_four_four_models_splits_and_only_their_tunes(tmp_path):
    folder = tmp_path / "tunes"
    folder.mkdir()
    for index in range(120):
        metre = (6, 8) if index % 2 else (4, 4)
        write_walk(folder / f"walk{index:02d}.mid", index, *metre)
    assert read_metre(folder / "walk01.mid") == "6/8"
    cache = tmp_path / "cache"
    whole = build(DatasetSettings(corpus=str(folder), windows="bars"), cache, progress=False)
    jigs = build(dataset_settings(DataConfig(corpus=str(folder), seq_len=24, windows="bars",
                                             metres=["6/8"])), cache, progress=False)
    assert jigs.from_cache  # one parse serves every phrase length
    assert whole.splits == jigs.splits and {"train", "val", "test"} <= set(jigs.splits)
    chosen = {jigs.names[i] for split in ("train", "val", "test") for i in jigs.pieces(split)}
    assert chosen == {name for name, metre in zip(jigs.names, jigs.metres, strict=True)
                      if metre == "6/8"} and len(chosen) == 60
    windows = jigs.windows("train", transpose=False)
    assert windows.shape[1] == 24 and len(windows) > 0
    assert jigs.grid.steps_per_bar == 12


def test_data_config_refuses_metres_whose_bars_do_not_fill_the_phrase():
    with pytest.raises(ConfigError, match="divides seq_len"):
        DataConfig(seq_len=32, metres=["3/4"])
    with pytest.raises(ConfigError, match="one length"):
        DataConfig(seq_len=24, metres=["3/4", "2/4"])
    with pytest.raises(ConfigError, match="metres"):
        DataConfig(seq_len=24, metres=["5/4"])


def test_a_four_four_models_weights_are_laid_onto_waltz_steps_by_position_in_the_bar():
    config = ModelConfig(latent_dim=4, hidden=8, layers=1, step_inputs=True,
                         z_every_step=True)
    torch.manual_seed(0)
    source = GLSRVAE(config, vocab_size=10, seq_len=32)
    target = GLSRVAE(config, vocab_size=10, seq_len=24)
    init = {"model": source.state_dict(), "model_args": source.shape(), "grid": [4, 4]}
    grid = Grid(4, 3, 24)
    assert is_transfer(init, grid) and not is_transfer(init, Grid(4, 4, 32))
    load_init(target, init, grid)
    old = source.decoder.weight_ih_l0.detach()  # (4H, d + 1 + 32)
    new = target.decoder.weight_ih_l0.detach()  # (4H, d + 1 + 24)
    first = config.latent_dim + 1
    assert torch.equal(new[:, :first], old[:, :first])
    for step, was in {0: 0, 5: 5, 11: 11, 12: 16, 13: 17, 23: 27}.items():
        assert torch.equal(new[:, first + step], old[:, first + was]), step
    assert torch.equal(target.encoder.weight_ih_l0, source.encoder.weight_ih_l0)


def model_json(metres: list[str] | None, beats: int = 4, seq_len: int = 32) -> dict:
    raw = {"format_version": 1, "vocabulary": ["rest", "__", "60", "61"],
           "steps_per_beat": 4, "beats_per_bar": beats, "seq_len": seq_len, "latent_dim": 2,
           "attributes": [], "latent_stats": {k: [0.0, 0.0] for k in ("mean", "std", "p5",
                                                                         "p95")}}
    return raw if metres is None else {**raw, "metres": metres}


def test_model_json_metres_and_what_each_model_plays():
    old = parse_model_json(model_json(None), "old")
    assert old.metres == ["4/4"] and old.plays_metre("2/4") and not old.plays_metre("6/8")
    waltz = parse_model_json(model_json(["3/4", "6/8"], 3, 24), "waltz")
    assert waltz.metre == "3/4, 6/8" and waltz.plays_metre("6/8")
    assert not waltz.plays_metre("4/4") and not waltz.plays_metre("2/4")
    with pytest.raises(Exception, match="do not have bars of 12"):
        parse_model_json(model_json(["4/4"], 3, 24), "wrong")
    assert plays(["4/4"], "2/2") and not plays(["3/4"], "6/8")


def test_the_default_model_follows_the_metre(tmp_path, monkeypatch):
    models = tmp_path / "presets" / "models"
    for name, metres, beats in (("melody", ["4/4"], 4), ("waltz-jig", ["3/4", "6/8"], 3)):
        (models / name).mkdir(parents=True)
        (models / name / "model.json").write_text(json.dumps(model_json(metres, beats)))
    monkeypatch.setenv("GLSR_LIVE_PRESETS", str(tmp_path / "presets"))
    assert model_for_metre(None).name == "melody"
    assert model_for_metre("2/4").name == "melody"
    assert model_for_metre("6/8").name == "waltz-jig"
    assert model_for_metre("3/4").name == "waltz-jig"


def test_written_files_keep_their_metre(tmp_path):
    path = tmp_path / "out.mid"
    write_played(path, [(0.0, 6.0, 62, 90), (6.0, 12.0, 64, 90)], Grid(4, 3, 24), 100.0,
                 metre="6/8")
    assert read_metre(path) == "6/8"
    write_played(path, [(0.0, 4.0, 62, 90)], Grid(4, 3, 24), 100.0)
    assert read_metre(path) == "3/4"  # quarter-note bars of the grid without one


def test_phrase_eval_and_glsr_eval_read_six_eight_tunes_for_the_waltz_jig_model(tmp_path):
    from glsr_train import evaluate, phrase_eval

    folder = tmp_path / "jigs"
    folder.mkdir()
    for index in range(3):
        write_walk(folder / f"jig{index}.mid", 100 + index, 6, 8)
    write_walk(folder / "reel.mid", 200, 4, 4)
    model = str(ROOT / "presets" / "models" / "waltz-jig")
    out = tmp_path / "kept.json"
    assert phrase_eval.main([model, "--melodies", str(folder), "--phrases", "3",
                             "--fidelity", "8", "--metre", "6/8", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["fidelity 8"]["rest_exact"] == 1.0
    report = evaluate.run(evaluate.parse_args([model, "--melodies", str(folder), "--out",
                                               str(tmp_path / "r"), "--phrases", "4",
                                               "--no-figures"]))
    assert report["per_metre"]["6/8"]["windows"] == report["regularised"]["windows"] > 0
    assert report["per_metre"]["3/4"] == {"windows": 0}  # no waltz in the folder
