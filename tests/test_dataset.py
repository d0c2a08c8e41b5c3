"""The Bach soprano dataset, user folders, and what a bad corpus gives."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mido
import numpy as np
import pytest
from glsr_train.dataset import SPLITS, DatasetSettings, build, split_by_family, transpositions

from glsr_live.tokens import is_canonical, notes_to_tokens, tokens_to_notes


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


def test_test_split_shares_at_most_15_percent_of_its_windows_with_train():
    done = dataset_cli("--json", "--quiet")
    info = json.loads(done.stdout)
    assert info["overlap_with_train"]["test"] <= 0.15
    assert info["overlap_with_train"]["val"] <= 0.15
    assert 200 <= info["families"] <= 280  # ~240 tune families among 350 chorales
    assert info["split_method"].startswith("tune families")


def test_known_near_copies_in_the_chorales_share_a_split(bach):
    """Pairs the old exact-melody hash put in different splits (issue 11)."""
    split_of = dict(zip(bach.names, bach.splits, strict=True))
    for a, b in (("bwv248.5", "bwv244.54"), ("bwv257", "bwv258"), ("bwv251", "bwv117.4")):
        assert split_of[f"bach/{a}"] == split_of[f"bach/{b}"], (a, b)


def test_a_planted_near_duplicate_lands_beside_its_twin(bach):
    """Twenty chorales each get a twin with one note changed, transposed by a tone: every twin
    must share its original's split (a hash of the exact line scatters them 80/10/10)."""
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(bach.lines), 20, replace=False)
    twins = []
    for index in chosen:
        twin = bach.lines[index].copy()
        onsets = np.flatnonzero(twin >= 0)
        twin[onsets[len(onsets) // 2]] += 1  # one note a semitone off
        twins.append(np.where(twin >= 0, twin + 2, twin).astype(twin.dtype))
    lines = bach.lines + twins
    names = bach.names + [f"twin of {bach.names[i]}" for i in chosen]
    families, splits, _ = split_by_family(lines, names, bach.settings, bach.vocab)
    for offset, index in enumerate(chosen):
        twin = len(bach.lines) + offset
        assert families[twin] == families[index]
        assert splits[twin] == splits[index], bach.names[index]
    assert {s for s in splits} == set(SPLITS)


def test_unseen_windows_are_those_whose_pattern_is_nowhere_in_train(bach):
    train = bach.windows("train", transpose=False)
    assert not bach.unseen(train).any()
    shifted = bach.windows("train")[:500]  # transposed copies are not unseen
    assert not bach.unseen(shifted).any()
    test = bach.windows("test", transpose=False)
    unseen = bach.unseen(test)
    assert 0.8 < unseen.mean() < 1.0


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


WALTZ = """X:1
T:Waltz with a pickup
M:3/4
L:1/8
K:G
"G"D2 | G2 B2 d2 | "C"e4 d2 | "D"c2 A2 F2 | "G"G4 D2 | G2 B2 d2 | "C"e4 d2 | "D"c2 A2 F2 | "G"G6 |]
"""


def test_windows_start_on_the_tunes_own_bar_lines_and_chord_symbols_are_not_notes(tmp_path):
    """A 3/4 tune with a one-beat pickup: bar lines every 12 steps from the padded pickup bar,
    windows of 32 steps (8 beats) start on them; the ABC chord symbols are not melody notes."""
    from glsr_train.corpus import score_file_melody
    from glsr_train.dataset import window_starts

    path = tmp_path / "waltz.abc"
    path.write_text(WALTZ)
    settings = DatasetSettings(corpus=str(path), windows="bars")
    melody = score_file_melody(path, settings.grid, None)
    assert list(melody.bars) == list(range(0, 108, 12))
    assert int((melody.line >= 0).sum()) == 20  # the melody's notes, no chord symbols
    assert melody.line[8] == 62  # the pickup D4 sounds on the bar's last beat
    assert list(window_starts(len(melody.line), settings, melody.bars)) == list(range(0, 73, 12))
    every_fourth = DatasetSettings(corpus=str(path), windows="stride")
    assert len(window_starts(len(melody.line), every_fourth, melody.bars)) == 20


def write_walks(folder: Path, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for index in range(count):
        steps = rng.integers(-4, 5, 48)
        write_melody(folder / f"walk{index}.mid", list(60 + np.cumsum(steps) % 24))


def test_each_source_of_a_mix_is_split_on_its_own(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    write_walks(first, 30, seed=1)
    write_walks(second, 30, seed=2)
    settings = DatasetSettings(corpus=(str(first), str(second)), windows="bars", max_shift=2)
    mixed = build(settings, tmp_path / "cache", progress=False)
    assert mixed.sources.count(str(first)) == 30 and mixed.sources.count(str(second)) == 30
    for source in (str(first), str(second)):
        alone = build(DatasetSettings(corpus=source, windows="bars", max_shift=2),
                      tmp_path / "cache", progress=False)
        in_mix = [s for s, src in zip(mixed.splits, mixed.sources, strict=True) if src == source]
        assert in_mix == alone.splits  # mixing never moves a tune to another split
        assert {"train", "val", "test"} <= set(in_mix)
    owners = {f: src for f, src in zip(mixed.families, mixed.sources, strict=True)}
    assert all(owners[f] == src for f, src in zip(mixed.families, mixed.sources, strict=True))
    for index, line in enumerate(mixed.lines):  # max_shift 2: at most five keys per tune
        shifts = transpositions(line, mixed.vocab, 2)
        assert 0 in shifts and len(shifts) <= 5 and min(shifts) >= -2 and max(shifts) <= 2
        assert len(mixed.line_windows(index)) == len(shifts) * len(
            mixed.line_windows(index, transpose=False))
    info = json.loads(dataset_cli("--corpus", str(first), "--corpus", str(second), "--windows",
                                  "bars", "--max-shift", "2", "--cache", str(tmp_path / "cache"),
                                  "--json").stdout)
    assert set(info["per_corpus"]) == {str(first), str(second)}
    assert info["per_corpus"][str(first)]["pieces"] == 30
    for part in info["per_corpus"].values():  # train against itself: every window seen
        assert part["overlap_with_train"]["train"] == part["overlap_with_own_train"]["train"] == 1


def test_export_midi_writes_a_splits_melodies_that_read_back_the_same(tmp_path):
    songs = tmp_path / "songs"
    write_walks(songs, 30, seed=3)
    (songs / "waltz.abc").write_text(WALTZ)
    settings = DatasetSettings(corpus=str(songs), windows="bars")
    original = build(settings, tmp_path / "cache", progress=False)
    out = tmp_path / "exported"
    done = dataset_cli("--corpus", str(songs), "--windows", "bars", "--cache",
                       str(tmp_path / "cache"), "--export-midi", str(out), "--split", "train")
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(original.pieces('train'))} train melodies" in done.stdout
    again = build(DatasetSettings(corpus=str(out)), tmp_path / "cache", progress=False)
    lines = {tuple(line.tolist()) for line in again.lines}
    for index in original.pieces("train"):
        line = original.lines[index]
        assert tuple(line.tolist()) in lines, original.names[index]
