"""End to end through a real JACK MIDI server: phrase in, knob turned, variations out, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, open_notes
from jack import DAEMON_STOP_SECONDS, Peer, cleaned_up, daemon_with_peers, jack_env, jack_server

from glsr_live.catalog import resolve_model

SHIPPED = ROOT / "presets" / "models" / "melody"  # the default: `glsr-live run` plays it
BPM = 240.0
STEP = 60 / BPM / 4
LOOP = 32 * STEP
pytestmark = pytest.mark.jack


@pytest.fixture(scope="module")
def jack_env_private():
    with jack_server(private=True) as name:
        yield jack_env(name)


def daemon_command(model: Path | None):
    """The daemon with port names of its own, so no other client on the server is mistaken;
    with no model, whatever `glsr-live run` plays by default."""
    chosen = ["--model", str(model)] if model is not None else []
    return lambda tag: [sys.executable, "-m", "glsr_live.cli", "run", "--api", "jack", "--quiet",
                        "--bpm", str(BPM), *chosen, "--virtual-in", f"{tag} in",
                        "--virtual-out", f"{tag} out"]


def note_ons(messages) -> int:
    return sum(m.type == "note_on" and m.velocity > 0 for m in messages)


PHRASE = f"phrase {BPM} 67 69 71 72 74 72 71 69"  # two bars of quarter notes


def notes_lost_on_the_way(recorded: list[int], heard: list[int]) -> int | None:
    """How many recorded notes the listener missed, when ``heard`` begins with ``recorded`` but
    for at most one note left out; None when it does not (a recording that differs).

    One is allowed: on these loaded 2-core machines without realtime threads, jackd now and then
    runs a client late and a MIDI event in that cycle never reaches the next client (stop 23's
    CI: the first loop's 74 recorded, not heard, every later loop alike). The daemon sent it.
    """
    if heard[:len(recorded)] == recorded:
        return 0
    shorter = heard[:len(recorded) - 1]
    if any(recorded[:i] + recorded[i + 1:] == shorter for i in range(len(recorded))):
        return 1
    return None


def phrase_comes_back(to_daemon: Peer, from_daemon: Peer):
    """Play the phrase (twice at most) until its variation comes back; None if it never does."""
    received = from_daemon.collect(1.0)  # let JACK connect the new ports
    for _ in range(2):
        to_daemon.command(PHRASE)
        received += from_daemon.collect(1.5 * LOOP)  # the variation starts at the phrase end
        if note_ons(received):
            return received
    return None


@pytest.fixture
def daemon_ports(jack_env_private, request):
    model = request.param
    if not (SHIPPED / "model.json").is_file():  # shipped and tracked: a move must not skip this
        pytest.fail(f"{SHIPPED} is missing: the only test of the real knob cannot run")
    assert resolve_model(None).resolve() == SHIPPED.resolve(), "the default is not melody"
    started = daemon_with_peers(jack_env_private, daemon_command(model), phrase_comes_back)
    process, *peers, _ = started
    with cleaned_up(process, *peers):
        yield started


@pytest.mark.parametrize("daemon_ports", [None], indirect=True)  # no --model: the default
def test_at_rest_the_phrase_comes_back_note_for_note(daemon_ports):
    """Every knob at its centre: what comes back through JACK is the phrase played in (its
    pitches, in order, and its velocity), not the model's reading of it."""
    process, to_daemon, from_daemon, received = daemon_ports
    loop = from_daemon.collect(2 * LOOP)
    struck = [m for m in received + loop if m.type == "note_on" and m.velocity > 0]
    pitches = [int(p) for p in PHRASE.split()[2:]]
    assert len(struck) >= 2 * len(pitches) - 1, [m.note for m in struck]
    whole = [m.note for m in struck[-(2 * len(pitches)):]]
    start = whole.index(pitches[0])
    assert whole[start: start + len(pitches)] == pitches, whole
    assert {m.velocity for m in struck} == {90}  # as the peer played them


@pytest.mark.parametrize("daemon_ports", [None], indirect=True)  # no --model: the default
def test_note_count_knob_raises_note_count_and_sigterm_closes_everything(daemon_ports):
    process, to_daemon, from_daemon, received = daemon_ports
    counts = []
    for previous, value in ((64, 0), (0, 127)):
        to_daemon.command(f"sweep 20 {previous} {value}")  # soft takeover picks it up on the way
        received += from_daemon.collect(0.5 * LOOP)  # let the change settle in
        loops = from_daemon.collect(2 * LOOP)
        received += loops
        counts.append(note_ons(loops) / 2)
    print("note counts low, high:", counts)
    assert counts[1] >= counts[0] + 2, counts
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=DAEMON_STOP_SECONDS)
    received += from_daemon.collect(0.3)
    assert process.returncode == 0, process.stderr.read()[-6000:]  # a stuck one: its stacks
    assert note_ons(received) > 0
    assert not open_notes(received)
    assert any(m.type == "control_change" and m.control == 123 for m in received)


def test_program_change_swaps_models_from_the_next_bar(jack_env_private, tiny_model_dir):
    """Two models: the shipped one and a tiny one whose decode of this phrase is silence (40
    training steps), so which model plays is audible. PC 1 silences the loop from the next bar,
    PC 0 brings the shipped model's notes back; nothing is left sounding."""
    def command(tag):
        return [*daemon_command(SHIPPED)(tag), "--model", str(tiny_model_dir)]

    process, to_daemon, from_daemon, received = daemon_with_peers(
        jack_env_private, command, phrase_comes_back)
    with cleaned_up(process, to_daemon, from_daemon):
        # off its centre the notes knob has the models play (at rest the phrase itself plays,
        # whichever model is loaded), and at fidelity 0 their own decodes (an edit of the
        # phrase carries the tiny model's move onto the phrase's notes)
        for _ in range(2):  # twice: a short sweep can fall in one JACK cycle that a client
            # misses (seen once in 11 runs: no knob moved, the phrase played at rest throughout)
            to_daemon.command("sweep 31 127 0")
            to_daemon.command("sweep 20 60 72")
            time.sleep(0.05)
        heard = {}
        for program in (1, 0):
            to_daemon.command(f"hex C0 {program:02X}")  # Program Change on channel 1
            received += from_daemon.collect(0.75 * LOOP)  # the swap waits for a bar line
            heard[program] = from_daemon.collect(2 * LOOP)
            received += heard[program]
        print("note-ons with the tiny model, back on the shipped one:",
              note_ons(heard[1]), note_ons(heard[0]))
        assert note_ons(heard[1]) == 0 and note_ons(heard[0]) >= 4
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DAEMON_STOP_SECONDS)
        received += from_daemon.collect(0.3)
        stderr = process.stderr.read()
        assert process.returncode == 0, stderr[-2000:]
        assert stderr.count("now playing") == 2, stderr[-2000:]
        assert not open_notes(received)


def recording_command(folder: Path, seed: int):
    """Each start records into a folder of its own (``folder/tag``): a start that
    ``daemon_with_peers`` gave up on leaves its session file there, not beside the one tested."""
    return lambda tag: [*daemon_command(SHIPPED)(tag), "--record", str(folder / tag), "--seed",
                        str(seed)]


def recorded_session(daemon) -> Path:
    """The one session file the (surviving) daemon wrote, from its own --record folder."""
    folder = Path(daemon.args[daemon.args.index("--record") + 1])
    (session_file,) = folder.glob("session-*.mid")
    return session_file


def daemon_child(process) -> int:
    """The daemon's pid under its supervisor (``glsr-live run`` supervises a child)."""
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True,
                              text=True).stdout.split()
    return int(children[0])


def test_a_recorded_jack_session_replays_as_the_client_heard_it(jack_env_private, tmp_path):
    from glsr_live.record import read_session
    from glsr_live.replay import replay_file

    process, to_daemon, from_daemon, received = daemon_with_peers(
        jack_env_private, recording_command(tmp_path, 5), phrase_comes_back)
    with cleaned_up(process, to_daemon, from_daemon):
        to_daemon.command("sweep 20 64 110")
        received += from_daemon.collect(2 * LOOP)
        to_daemon.command("sweep 20 110 10")
        received += from_daemon.collect(2 * LOOP)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DAEMON_STOP_SECONDS)
        received += from_daemon.collect(0.3)
    session_file = recorded_session(process)
    session = read_session(session_file)
    recorded = [m for _, m in session.outgoing if m.type == "note_on" and m.velocity > 0]
    heard = [m for m in received if m.type == "note_on" and m.velocity > 0]
    lost = notes_lost_on_the_way([m.note for m in recorded], [m.note for m in heard])
    print(f"client heard {len(heard)} notes, the recording holds {len(recorded)}; lost on the "
          f"way to the client: {lost}")
    assert lost is not None and len(heard) + lost == len(recorded) and len(heard) >= 8
    result = replay_file(session_file, tmp_path / "replayed.mid")
    print("replay:", result)
    assert result["identical"], result
    assert session.ended is not None


def test_sigkill_while_recording_leaves_a_whole_file(tmp_path):
    from glsr_live.record import read_session

    with jack_server(private=True) as server:  # its own: a killed client can stall jackd
        process, to_daemon, from_daemon, received = daemon_with_peers(
            jack_env(server), recording_command(tmp_path, 6), phrase_comes_back)
        with cleaned_up(process, to_daemon, from_daemon):
            received += from_daemon.collect(2 * LOOP)
            os.kill(daemon_child(process), signal.SIGKILL)
            received += from_daemon.collect(0.5)
            process.wait(timeout=10)
    session_file = recorded_session(process)
    session = read_session(session_file)  # a whole MIDI file, readable
    recorded = [m for _, m in session.outgoing if m.type == "note_on" and m.velocity > 0]
    heard = [m for m in received if m.type == "note_on" and m.velocity > 0]
    last = max(s for s, _ in session.outgoing)
    lost = notes_lost_on_the_way([m.note for m in recorded], [m.note for m in heard])
    print(f"after SIGKILL: {len(session.incoming)} messages in, {len(recorded)} notes out of "
          f"{len(heard)} heard; last at {last:.2f} s; ended mark: {session.ended}; lost on the "
          f"way to the client: {lost}")
    assert session.ended is None and len(session.incoming) >= 16
    assert lost is not None  # the file holds what was played, in order
    # at most about a second of output (at 240 BPM, 16 steps) is missing
    assert len(heard) - 10 <= len(recorded) - lost <= len(heard)
