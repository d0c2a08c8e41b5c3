"""The live view rendered to text at 60, 100 and 200 columns: it fits and shows what it must."""

from __future__ import annotations

import mido
import pytest
from test_axis import engine_with_phrase

from glsr_live.knobs import Knob, Options, Preset
from glsr_live.view import LiveView, render_text


@pytest.fixture
def playing_engine(fake_model):
    knobs = (Knob(20, "notes", min=-4, max=4), Knob(21, "register", min=60, max=84,
                                                      mode="value"),
             Knob(22, "temperature", min=0, max=1.2, default=0), Knob(27, "morph", min=0, max=1,
                                                                      default=0),
             Knob(26, "capture", default=0))
    engine = engine_with_phrase(fake_model, Preset(Options(soft_takeover=True), knobs))
    engine.handle(mido.Message("control_change", control=21, value=64), 4.1)  # G4 or so
    engine.handle(mido.Message("control_change", control=20, value=110), 4.1)  # not picked up
    engine.settle()
    engine._maybe_swap(48)
    return engine


@pytest.mark.parametrize("width", [60, 100, 200])
def test_the_view_fits_the_terminal_and_shows_state_knobs_rolls_events(playing_engine, width):
    view = LiveView("bach-soprano")
    view.event("model swapped to melody")
    text = render_text(view, playing_engine, 4.2, width)
    print(f"\n--- {width} columns ---\n{text}")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert lines[0].startswith("playing") and "120.0 BPM" in lines[0] and "bar 3.1" in lines[0]
    assert "model bach-soprano" in lines[0]
    notes = next(line for line in lines if line.startswith("notes"))
    assert "◆" in notes and "pick up" in notes  # soft takeover waits for the hardware knob
    register = next(line for line in lines if line.startswith("register"))
    assert "C5 → C5" in register  # a value knob in note names: CC 64 of C4..C6
    assert not any(line.startswith("capture") for line in lines)  # buttons have no bar
    assert any("█" in line for line in lines)  # the rolls
    assert "phrase" in text and "playing" in text
    assert "phrase captured (8 notes)" in text and "model swapped to melody" in text


def test_events_keep_the_last_few(playing_engine):
    view = LiveView("m")
    for index in range(10):
        view.event(f"event {index}")
    text = render_text(view, playing_engine, 4.2, 100)
    assert "event 9" in text and "event 5" not in text


def test_the_header_names_the_model_playing_now(playing_engine, tmp_path):
    """After Program Change 1 the header says the new model, as the event line does."""
    view = LiveView("melody")
    playing_engine.model.directory = tmp_path / "bach-soprano"
    lines = render_text(view, playing_engine, 4.2, 100).splitlines()
    assert "model bach-soprano" in lines[0] and "melody" not in lines[0]


def test_a_long_event_is_shown_whole(playing_engine):
    reason = ("reload failed, still playing the old model: /home/someone/models/mine/"
              "decoder.onnx: not a usable ONNX model (Protobuf parsing failed at byte 1234)")
    view = LiveView("m")
    view.event(reason)
    text = render_text(view, playing_engine, 4.2, 80)
    assert "".join(line.strip() for line in text.splitlines()).count("byte 1234)") == 1


def test_a_resized_terminal_is_redrawn_whole_from_the_top(playing_engine):
    """The view owns the alternate screen and redraws from its top-left corner, so a
    narrower terminal keeps no lines of the wider layout above the view."""
    import io

    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, height=40, color_system=None)
    view = LiveView("m", console=console)
    view.show(playing_engine, 4.2)
    try:
        view.live.refresh()
        console.size = (60, 40)
        out.seek(0)
        out.truncate()
        view.live.refresh()
    finally:
        view.stop()
    drawn = out.getvalue()
    assert drawn.startswith("\x1b[H")  # cursor home, then the whole screen
    assert all(len(line) <= 60 for line in drawn.split("\x1b[H", 1)[1].splitlines()[:30])


def test_the_view_says_how_much_of_the_phrase_the_variation_keeps(fake_model):
    from test_axis import engine_with_phrase

    from glsr_live.status import status_line

    preset = Preset(Options(soft_takeover=False), (Knob(20, "notes", min=-4, max=4),))
    engine = engine_with_phrase(fake_model, preset)
    engine._maybe_swap(40)
    assert "playing (8 of 8 kept)" in render_text(LiveView("m"), engine, 4.2, 100)  # at rest
    engine.handle(mido.Message("control_change", control=20, value=100), 4.1)
    engine.settle()
    engine._maybe_swap(41)
    kept, total = engine.kept_notes()
    assert total == 8 and kept < 8
    assert f"playing ({kept} of 8 kept)" in render_text(LiveView("m"), engine, 4.2, 100)
    assert f"notes, {kept} of 8 kept" in status_line(engine, 4.2)


@pytest.mark.parametrize(("metre", "where"), [(None, "4/4  bar 3.1"), ("2/4", "2/4  bar 5.1"),
                                              ("6/8", "6/8  bar 3.2")])
def test_the_header_says_the_metre_and_counts_its_bars_and_beats(playing_engine, metre, where):
    """At 4.2 s and 120 BPM the clock is on step 33: bar 3 of 4/4, bar 5 of 2/4, and in 6/8
    (12 steps a bar, beats of a dotted quarter) the second beat of bar 3."""
    header = render_text(LiveView("m", metre=metre), playing_engine, 4.2, 100).splitlines()[0]
    assert where in header, header
