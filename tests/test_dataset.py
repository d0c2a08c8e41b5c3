"""The Bach soprano dataset, user folders, and what a bad corpus gives."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mido
import numpy as np
import pytest

from glsr_live.tokens import is_canonical, notes_to_tokens, tokens_to_notes
from training.dataset import SPLITS, DatasetSettings, build, melody_key


def dataset_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["glsr-dataset", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bach():
    return build(DatasetSettings(), progress=False)


def test_bach_summary_json(bach):
    done = dataset_cli("--json")
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout)
    assert info["pieces"] >= 340
    assert set(info["windows"]) == set(SPLITS) and min(info["windows"].values()) > 1000
    assert info["vocab"] == info["pitch_range"][1] - info["pitch_range"][0] + 3
    assert info["seq_len"] == 32 and "skipped" in info


def test_no_chorale_or_tune_in_two_splits(bach):
    names = {split: {bach.names[i] for i in bach.pieces(split)} for split in SPLITS}
    keys = {split: {melody_key(bach.lines[i]) for i in bach.pieces(split)} for split in SPLITS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not names[a] & names[b]
        assert not keys[a] & keys[b]


def test_every_window_round_trips_through_notes(bach):
    for split in SPLITS:
        windows = bach.windows(split)
        assert windows.shape[1] == 32
        for tokens in windows:
            assert is_canonical(tokens)
            back = notes_to_tokens(tokens_to_notes(tokens, bach.vocab), bach.vocab, 32)
            assert np.array_equal(back, tokens)


def test_transpositions_stay_in_the_corpus_range(bach):
    windows = bach.windows("train")
    assert windows.min() >= 0 and windows.max() == bach.vocab.size - 1


def write_melody(path: Path, pitches: list[int]) -> None:
    midi = mido.MidiFile(ticks_per_beat=96)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    for pitch in pitches:
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=96))
    midi.save(path)


def test_user_folder_with_one_broken_file(tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    for index in range(3):
        write_melody(folder / f"tune{index}.mid", [60 + (i * (index + 2)) % 12 for i in range(40)])
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    done = dataset_cli("--corpus", str(folder), "--cache", str(tmp_path / "cache"), "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["pieces"] == 3 and info["skipped"] == 1
    assert "broken.mid" in next(iter(info["skipped_reasons"]))


@pytest.mark.parametrize("make", ["empty_folder", "malformed_file", "missing"])
def test_unusable_corpus_is_one_line_and_exit_2(tmp_path, make):
    target = tmp_path / "corpus"
    if make == "empty_folder":
        target.mkdir()
    elif make == "malformed_file":
        target = tmp_path / "bad.mid"
        target.write_bytes(b"this is not midi")
    done = dataset_cli("--corpus", str(target), "--cache", str(tmp_path / "cache"))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_corrupt_cache_is_rebuilt(tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    write_melody(folder / "tune.mid", [60, 62, 64, 65] * 10)
    cache = tmp_path / "cache"
    assert dataset_cli("--corpus", str(folder), "--cache", str(cache)).returncode == 0
    for file in cache.glob("*.npz"):
        file.write_bytes(b"damaged")
    again = dataset_cli("--corpus", str(folder), "--cache", str(cache), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["from_cache"] is False
