"""render of a whole tune: varied phrase by phrase, or the bars asked for, at the file's tempo."""

from __future__ import annotations

import mido
import numpy as np
import pytest
from conftest import ROOT

from glsr_live.midifile import read_notes, write_notes
from glsr_live.model import Model
from glsr_live.render import RenderError, Sweep, parse_bars, render
from glsr_live.tokens import Grid, Note

MELODY = ROOT / "presets" / "models" / "melody"


def sixteen_bars(path, bpm: float = 90.0) -> list[Note]:
    """A 16-bar walk in quarters and eighths, and one lower note under a longer one."""
    rng = np.random.default_rng(0)
    notes, onset, pitch = [], 0, 67
    while onset < 16 * 16:
        length = int(rng.choice([2, 4, 4, 8]))
        pitch = int(np.clip(pitch + rng.integers(-3, 4), 60, 79))
        notes.append(Note(onset, min(length, 16 * 16 - onset), pitch))
        onset += length
    write_notes(path, [*notes, Note(8, 2, 48)], Grid(), bpm=bpm)
    return notes


def test_a_sixteen_bar_file_is_varied_phrase_by_phrase_at_its_tempo(tmp_path):
    notes = sixteen_bars(tmp_path / "tune.mid")
    summary = render(tmp_path / "tune.mid", tmp_path / "out.mid", Model(MELODY), [],
                     [Sweep("notes", 1.0, 1.0, 1)], png=tmp_path / "roll.png")
    assert summary[0]["phrases"] == 8 and summary[0]["dropped"] == 1
    assert summary[0]["notes"] == len(notes) and summary[0]["bpm"] == 90.0
    assert summary[1]["kept"][1] == len(notes) and summary[1]["notes"] > len(notes)
    out = mido.MidiFile(str(tmp_path / "out.mid"))
    assert any(m.type == "set_tempo" and round(mido.tempo2bpm(m.tempo)) == 90 for m in out)
    played = read_notes(tmp_path / "out.mid")
    assert 30 * 4 < max(n.end for n in played) <= 32 * 4  # 16 bars in, 16 bars varied
    first = sorted((round(n.start * 4), n.pitch) for n in played if n.start < 16 * 4)
    assert first == sorted((n.onset, n.pitch) for n in notes)  # the tune itself, as written


def test_bars_pick_a_part_of_the_file(tmp_path):
    notes = sixteen_bars(tmp_path / "tune.mid")
    summary = render(tmp_path / "tune.mid", tmp_path / "out.mid", Model(MELODY), [],
                     [Sweep("notes", -1.0, -1.0, 1)], bars=parse_bars("5:8"))
    assert summary[0]["phrases"] == 2 and summary[0]["first_bar"] == 5
    assert summary[0]["notes"] == sum(4 * 16 <= n.onset < 8 * 16 for n in notes)
    with pytest.raises(RenderError, match="--bars wants A:B"):
        parse_bars("8:5")
    with pytest.raises(RenderError, match="no notes in bars 40-41"):
        render(tmp_path / "tune.mid", tmp_path / "x.mid", Model(MELODY), [], [],
               bars=(40, 41))


WALTZ_JIG = ROOT / "presets" / "models" / "waltz-jig"


def waltz(path, bars: int = 16, bpm: float = 132.0) -> list[Note]:
    """A waltz of ``bars`` bars of 3/4: a dotted quarter, an eighth, a quarter, in each bar."""
    rng = np.random.default_rng(1)
    notes, pitch = [], 67
    for bar in range(bars):
        for onset, length in ((0, 6), (6, 2), (8, 4)):
            pitch = int(np.clip(pitch + rng.integers(-3, 4), 60, 79))
            notes.append(Note(bar * 12 + onset, length, pitch))
    write_notes(path, notes, Grid(4, 3, 24), bpm=bpm, metre="3/4")
    return notes


def test_a_sixteen_bar_waltz_is_varied_in_three_four_by_the_waltz_model(tmp_path):
    from glsr_live.cli import main
    from glsr_live.midifile import read_metre

    notes = waltz(tmp_path / "waltz.mid")
    assert main(["render", str(tmp_path / "waltz.mid"), "-o", str(tmp_path / "out.mid"),
                 "--sweep", "notes=1:1:1", "--png", str(tmp_path / "roll.png")]) == 0
    assert read_metre(tmp_path / "out.mid") == "3/4"  # the file's metre, kept
    out = mido.MidiFile(str(tmp_path / "out.mid"))
    assert any(m.type == "set_tempo" and round(mido.tempo2bpm(m.tempo)) == 132 for m in out)
    played = read_notes(tmp_path / "out.mid")
    assert 30 * 3 < max(n.end for n in played) <= 32 * 3  # 16 bars in, 16 bars varied
    first = sorted((round(n.start * 4), n.pitch) for n in played if n.start < 16 * 3)
    assert first == sorted((n.onset, n.pitch) for n in notes)
    summary = render(tmp_path / "waltz.mid", tmp_path / "again.mid", Model(WALTZ_JIG), [],
                     [], bars=parse_bars("3:6"))
    assert summary[0]["phrases"] == 2 and summary[0]["metre"] == "3/4"
    assert summary[0]["notes"] == sum(2 * 12 <= n.onset < 6 * 12 for n in notes)


def test_a_file_in_a_metre_the_model_does_not_play_is_one_line(tmp_path, capsys):
    from glsr_live.cli import main

    waltz(tmp_path / "waltz.mid", bars=4)
    code = main(["render", str(tmp_path / "waltz.mid"), "-o", str(tmp_path / "out.mid"),
                 "--model", "melody"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "is in 3/4 and the model melody plays 4/4" in err
    assert not (tmp_path / "out.mid").exists()
    assert main(["render", str(tmp_path / "waltz.mid"), "-o", str(tmp_path / "out.mid"),
                 "--model", "melody", "--metre", "4/4"]) == 0  # read as 4/4 when asked
