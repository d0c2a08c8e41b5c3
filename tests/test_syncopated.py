"""The syncopation probe: tunes the project writes itself, off the beat, the same for a seed."""

from __future__ import annotations

from glsr_train.syncopated import write_folder

from glsr_live.midifile import read_notes


def test_a_seed_writes_the_same_eight_bar_tunes_with_most_onsets_off_the_beat(tmp_path):
    paths = write_folder(tmp_path / "a", 6, seed=3)
    again = write_folder(tmp_path / "b", 6, seed=3)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    off_beat = total = 0
    for path in paths:
        notes = read_notes(path)
        assert 8 * 4 - 4 < max(n.end for n in notes) <= 8 * 4  # eight 4/4 bars
        onsets = [round(n.start * 4) for n in notes]
        off_beat += sum(step % 4 != 0 for step in onsets)
        total += len(onsets)
    assert off_beat / total > 0.5  # folk and chorale lines: mostly on the beat
