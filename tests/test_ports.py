"""Port name matching, without a MIDI system."""

import pytest

from glsr_live.ports import (
    PortError,
    PortKeeper,
    PortRequest,
    backend_for,
    is_ours,
    match_port,
)

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


class FakeBackend:
    """Input names that tests change, and the names ports were opened with."""

    def __init__(self, names):
        self.names, self.opened = list(names), []

    def get_input_names(self):
        return list(self.names)

    def open_input(self, name, callback=None):
        self.opened.append(name)
        return FakePort(name)


class FakePort:
    def __init__(self, name):
        self.name = name

    def close(self):
        pass


def test_a_device_back_under_new_client_numbers_is_reconnected():
    backend = FakeBackend(["nanoKEY2:nanoKEY2 MIDI 1 20:0", "Midi Through:Port-0 14:0"])
    keeper = PortKeeper(backend, PortRequest("input", "nanokey"), "alsa")
    assert keeper.check() is None
    backend.names = ["Midi Through:Port-0 14:0"]
    assert keeper.check() == "lost"
    assert keeper.check() is None  # said once
    backend.names.append("nanoKEY2:nanoKEY2 MIDI 1 24:0")  # re-plugged: a new client number
    assert keeper.check() == "reconnected"
    assert backend.opened[-1] == "nanoKEY2:nanoKEY2 MIDI 1 24:0"
    assert keeper.check() is None


def test_an_ambiguous_comeback_waits_instead_of_guessing():
    backend = FakeBackend(["keys:keys"])
    keeper = PortKeeper(backend, PortRequest("input", "keys"), "jack")
    backend.names = []
    assert keeper.check() == "lost"
    backend.names = ["keys-01:keys", "keys-02:keys"]
    assert keeper.check() is None and keeper.lost
    backend.names = ["keys:keys", "keys-02:keys"]  # the exact name wins
    assert keeper.check() == "reconnected" and backend.opened[-1] == "keys:keys"


def test_a_failing_port_list_is_retried_before_the_system_counts_as_gone():
    backend = FakeBackend(["keys:keys"])
    keeper = PortKeeper(backend, PortRequest("input", "keys"), "jack")
    backend.get_input_names = lambda: (_ for _ in ()).throw(SystemError("port vanished"))
    assert keeper.check() is None and keeper.check() is None  # a client came and went
    with pytest.raises(PortError):
        keeper.check()  # third failure in a row: the MIDI system is gone


def test_a_virtual_port_notices_when_the_midi_system_is_gone():
    """Virtual ports have no peer to look for, yet a stopped JACK server must be noticed."""
    backend = FakeBackend([])
    backend.open_input = lambda name, virtual=False, client_name=None, callback=None: \
        FakePort(name)
    keeper = PortKeeper(backend, PortRequest("input", virtual="glsr-live in"), "alsa")
    assert keeper.check() is None  # the system answers
    backend.get_input_names = lambda: (_ for _ in ()).throw(SystemError("server not running"))
    assert keeper.check() is None and keeper.check() is None
    with pytest.raises(PortError, match="is the ALSA sequencer loaded"):
        keeper.check()


class OwnLister:
    """rtmidi's object of an open port: lists through the port's own client."""

    def __init__(self, names):
        self.names = names

    def get_ports(self):
        return list(self.names)


def test_ports_are_listed_by_their_own_client_and_an_empty_list_means_gone():
    """No new client per check (with JACK that costs ~85 ms holding the GIL); a system that
    lists nothing, not even our other port, is gone after three checks."""
    backend = FakeBackend(["keys:keys"])
    own = OwnLister(["keys:keys", "glsr-live:glsr-live out"])

    def opened(name, virtual=False, client_name=None, callback=None):
        port = FakePort(name)
        port._rt = own
        return port

    backend.open_input = opened
    keeper = PortKeeper(backend, PortRequest("input", "keys"), "coremidi")
    backend.get_input_names = lambda: (_ for _ in ()).throw(AssertionError("a new client"))
    assert keeper.check() is None
    own.names = ["glsr-live:glsr-live out"]
    assert keeper.check() == "lost"
    own.names = []
    assert keeper.check() is None and keeper.check() is None
    with pytest.raises(PortError, match="lists no ports"):
        keeper.check()


def test_a_jack_server_is_asked_through_its_socket_and_gone_at_once(tmp_path, monkeypatch):
    """jack2's request socket answers a connect while the server runs; with no server there,
    the system is gone at the first check, whatever the ports' stale lists still say."""
    import socket

    from glsr_live.ports import SystemGone

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = tmp_path / "jack_test_0_0"
    server.bind(str(path))
    server.listen(4)
    backend = FakeBackend(["keys:keys"])
    keeper = PortKeeper(backend, PortRequest("input", "keys"), "jack")
    keeper.server = path
    assert keeper.check() is None
    server.close()
    path.unlink()
    with pytest.raises(SystemGone, match="the server is gone"):
        keeper.check()
