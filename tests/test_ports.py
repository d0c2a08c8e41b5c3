"""Port name matching, without a MIDI system."""

import pytest

from glsr_live.ports import PortError, backend_for, is_ours, match_port

NAMES = ["Midi Through:Midi Through Port-0 14:0", "KeyStep 37:KeyStep 37 MIDI 1 20:0",
         "loopMIDI Port 1", "loopMIDI Port 2"]


def test_partial_names_match_case_insensitively():
    assert match_port("keystep", NAMES, "input") == NAMES[1]
    assert match_port("loopMIDI Port 2", NAMES, "input") == "loopMIDI Port 2"


def test_unknown_and_ambiguous_names_are_one_line_errors():
    with pytest.raises(PortError, match="no MIDI input port matches 'launchpad'"):
        match_port("launchpad", NAMES, "input")
    with pytest.raises(PortError, match="matches several"):
        match_port("loopmidi", NAMES, "output")


def test_our_own_ports_are_not_candidates():
    assert is_ours("glsr-live:glsr-live in") and is_ours("glsr-live-01:glsr-live out")
    assert not is_ours("sink:sink") and not is_ours("glsr-live in")


def test_unknown_api_is_a_clear_error():
    with pytest.raises(PortError, match="unknown MIDI API"):
        backend_for("sndio")
    with pytest.raises(PortError, match="not available here"):
        backend_for("winmm")
