"""Knob presets, clocks and the player, as pure pieces."""

import mido
import pytest

from glsr_live.clock import InternalClock, MidiClock
from glsr_live.knob_state import KnobState
from glsr_live.knobs import (
    Knob,
    Options,
    Preset,
    PresetError,
    dump_preset,
    inverse_shape,
    load_preset,
    parse_preset,
    shape,
)
from glsr_live.player import Player, Variation
from glsr_live.tokens import HOLD, REST, Vocabulary

ATTRIBUTES = {"notes", "register"}
DEFAULT = __import__("conftest").ROOT / "presets" / "knobs" / "default.toml"


def test_shipped_preset_loads_and_round_trips_through_dump(tmp_path):
    preset = load_preset(DEFAULT, ATTRIBUTES)
    assert {k.target for k in preset.knobs} >= {"notes", "register", "temperature", "freeze"}
    path = tmp_path / "again.toml"
    path.write_text(dump_preset(preset))
    assert load_preset(path, ATTRIBUTES) == preset


@pytest.mark.parametrize("text, message", [
    ("[[knob]]\ncc = 200\ntarget = 'notes'\n", "cc must be an integer 0..127"),
    ("[[knob]]\ncc = 20\ntarget = 'mood'\n", "neither an attribute"),
    ("[[knob]]\ncc = 20\ntarget = 'notes'\ncolour = 'red'\n", "unknown key"),
    ("[[knob]]\ncc = '20'\ntarget = 'notes'\n", "cc must be an integer"),
    ("[options]\nchannel = 17\n", "options.channel must be an integer 1..16"),
    ("[[knob]]\ncc = 20\ntarget = 'notes'\n[[knob]]\ncc = 20\ntarget = 'register'\n",
     "mapped twice"),
    ("[[knob]]\ncc = 20\ntarget = 'notes'\ncurve = 'wobbly'\n", "curve must be one of"),
    ("knob = 3\n", "[[knob]] tables"),
    ("[options\n", "not valid TOML"),
])
def test_bad_presets_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PresetError) as error:
        load_preset(path, ATTRIBUTES)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("curve", ["linear", "exponential", "s-curve"])
def test_curves_are_monotone_and_invertible(curve):
    points = [shape(i / 127, curve) for i in range(128)]
    assert points == sorted(points) and points[0] == 0 and points[-1] == pytest.approx(1)
    assert all(inverse_shape(shape(x / 10, curve), curve) == pytest.approx(x / 10)
               for x in range(11))


def test_bipolar_knob_has_a_centre_detent_and_reaches_its_ends():
    knob = Knob(20, "notes", min=-2.5, max=2.5)
    assert knob.value(64) == knob.value(63) == knob.value(65) == 0.0
    assert knob.value(0) == -2.5 and knob.value(127) == 2.5


def test_knob_channel_filter():
    preset = parse_preset({"knob": [{"cc": 20, "target": "notes", "channel": 2}]}, ATTRIBUTES)
    assert preset.find(20, 2) is not None and preset.find(20, 1) is None


def test_soft_takeover_picks_up_on_approach_or_crossing():
    knob = Knob(20, "notes")
    state = KnobState(Preset(Options(soft_takeover=True), (knob,)))
    assert not state.move(knob, 10)  # far away: ignored
    assert not state.move(knob, 30)
    assert state.waiting_for_pickup() == ["notes"]
    assert state.move(knob, 66)  # crossed 64 between 30 and 66
    assert state.waiting_for_pickup() == []
    assert state.move(knob, 0) and state.offsets()["notes"] == -3.0


def test_internal_clock_positions_and_times():
    clock = InternalClock(bpm=90)
    assert clock.position(5.0) is None
    clock.start(10.0)
    assert clock.position(10.0 + 4 * clock.step_seconds) == pytest.approx(4)
    assert clock.time_of(8) == pytest.approx(10.0 + 8 * 60 / 90 / 4)
    with pytest.raises(ValueError):
        InternalClock(bpm=0)


def test_midi_clock_smooths_jittery_ticks_and_ignores_ticks_while_stopped():
    clock = MidiClock()
    for _ in range(10):
        clock.handle(mido.Message("clock"), 0.0)
    assert clock.ticks == 0  # no start yet
    clock.handle(mido.Message("start"), 0.0)
    now, interval = 0.0, 60 / 130 / 24
    for index in range(24 * 16):
        now += interval * (1.1 if index % 2 else 0.9)
        clock.handle(mido.Message("clock"), now)
    assert clock.bpm == pytest.approx(130, rel=0.02)
    assert clock.position(now) == 64
    clock.handle(mido.Message("stop"), now)
    assert clock.position(now) is None
    clock.handle(mido.Message("continue"), now)
    assert clock.position(now) == 64


def test_player_strikes_holds_and_closes_on_swap():
    vocab = Vocabulary(57, 81)
    first = Variation.from_tokens([vocab.token(60), HOLD, HOLD, REST], vocab)
    second = Variation.from_tokens([vocab.token(64), HOLD, vocab.token(65), HOLD], vocab)
    player = Player(channel=3)
    sent = player.play_step(first, 0) + player.play_step(first, 1)
    assert [(m.type, m.note) for m in sent] == [("note_on", 60)]
    sent = player.play_step(second, 2)  # swap mid-note: 60 stops, 65 starts
    assert [(m.type, m.note) for m in sent] == [("note_off", 60), ("note_on", 65)]
    # 65 holds; 60's note-off is said twice more (the safety net), nothing else
    assert [(m.type, m.note) for m in player.play_step(second, 3)] == [("note_off", 60)]
    assert [(m.type, m.note) for m in player.play_step(second, 3)] == [("note_off", 60)]
    assert player.play_step(second, 3) == []
    assert [(m.type, m.note, m.channel) for m in player.panic()] == [("note_off", 65, 3)]
    assert not player.open_notes


def listener_voices(messages) -> dict[int, int]:
    """Voices per pitch at a synth that stacks a voice per note-on and ends one per off."""
    voices: dict[int, int] = {}
    for message in messages:
        if message.type == "note_on" and message.velocity > 0:
            voices[message.note] = voices.get(message.note, 0) + 1
        elif message.type in ("note_on", "note_off"):
            voices[message.note] = max(0, voices.get(message.note, 0) - 1)
    return {pitch: count for pitch, count in voices.items() if count}


@pytest.mark.parametrize("safety_net", [True, False])
def test_a_lost_note_off_never_leaves_a_note_sounding(safety_net):
    """Drop each message the player sends, one at a time: the listener may hold a pitch the
    variation does not sound for one step at most (the repeated note-off ends it). Without
    the safety net a lost note-off hangs for good: the check fails."""
    vocab = Vocabulary(57, 81)
    t = vocab.token
    # restrikes of one pitch, a note ended by a rest, a note ended by another, a knob swap
    first = Variation.from_tokens([t(60), t(60), HOLD, REST, t(62), t(64), HOLD, REST], vocab)
    second = Variation.from_tokens([t(67), HOLD, t(60), REST, t(60), HOLD, t(65), HOLD], vocab)
    plan = [first] * 12 + [second] * 12 + [first] * 8  # 4 loops, a swap mid-loop
    hanging = []
    for lost in range(40):
        player = Player(channel=0, safety_net=safety_net)
        heard, sent, unwanted_before = [], 0, set()
        for step, variation in enumerate(plan):
            for message in player.play_step(variation, step):
                if sent != lost:
                    heard.append(message)
                sent += 1
            unwanted = set(listener_voices(heard)) - {int(variation.sounding[step % 8])}
            if unwanted & unwanted_before:  # a second step in a row: hanging
                hanging.append((lost, step, sorted(unwanted & unwanted_before)))
            unwanted_before = unwanted
    assert (not hanging) == safety_net, hanging[:3]


def test_loop_boundary_sweep_ends_a_note_whose_off_and_repeat_were_both_lost():
    vocab = Vocabulary(57, 81)
    t = vocab.token
    variation = Variation.from_tokens([t(62), HOLD, t(60), HOLD, REST, REST, REST, REST], vocab)
    player = Player(channel=0)
    heard = []
    for step in range(8):
        messages = player.play_step(variation, step)
        heard += [m for m in messages if not (m.type == "note_off" and m.note == 60)]
    assert 60 in listener_voices(heard)  # the off at step 4 and its repeat at 5 were lost
    heard += player.play_step(variation, 8)  # loop boundary: the sweep
    assert listener_voices(heard) == {62: 1}
