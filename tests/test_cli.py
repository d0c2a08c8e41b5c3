"""The glsr-live command line: render, bench, ports, and one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest
from jack import jack_env, jack_server

from glsr_live.bench import run_burst
from glsr_live.catalog import resolve_model
from glsr_live.midifile import read_notes
from glsr_live.model import Model


def glsr_live(*args: str, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glsr_live.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def write_phrase(path, pitches=(67, 69, 71, 72, 74, 72, 71, 69)):
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    for pitch in pitches:
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_on", note=pitch, velocity=0, time=480))
    midi.save(path)


def test_render_writes_midi_and_png(tiny_model_dir, tmp_path):
    source, out, png = tmp_path / "in.mid", tmp_path / "out.mid", tmp_path / "roll.png"
    write_phrase(source)
    done = glsr_live("render", str(source), "-o", str(out), "--model", str(tiny_model_dir),
                     "--sweep", "notes=-2:2:3", "--knob", "register=0.5", "--png", str(png))
    assert done.returncode == 0, done.stderr
    notes = read_notes(out)
    assert [n.pitch for n in notes if n.start < 8] == [67, 69, 71, 72, 74, 72, 71, 69]
    assert all(n.start < 8 * 4 for n in notes)  # input + 3 variations, 2 bars each
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 500
    assert "bars 7-8" in done.stdout


def test_render_notes_sweep_changes_the_note_count_with_the_shipped_model(tmp_path):
    source, out = tmp_path / "in.mid", tmp_path / "out.mid"
    write_phrase(source)
    done = glsr_live("render", str(source), "-o", str(out), "--model", "bach-soprano",
                     "--sweep", "notes=-2.5:2.5:5")
    assert done.returncode == 0, done.stderr
    counts = [sum(1 for n in read_notes(out) if 8 * k <= n.start < 8 * (k + 1))
              for k in range(1, 6)]  # 2-bar segments after the input, in beats
    assert counts == sorted(counts) and counts[-1] - counts[0] >= 4, counts
    assert [int(line.split(": ")[-1].split()[0]) for line in done.stdout.splitlines()
            if line.startswith("bars ") and "notes=" in line] == counts


def test_models_lists_the_installed_models_with_one_line_each():
    done = glsr_live("models")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("bach-soprano"))
    assert "notes@z0" in line and "register@z1" in line and "MB" in line and "acc" in line
    assert "; 4/4, d=" in line  # each model's metre
    listing = json.loads(glsr_live("models", "--json").stdout)
    assert (Path(listing["bach-soprano"]) / "model.json").is_file()


def test_a_metre_the_model_does_not_play_is_one_line_and_exit_2():
    done = glsr_live("run", "--metre", "6/8", "--model", "melody", "--api", "jack")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "glsr-live run: --metre 6/8: the model melody plays two bars of 4/4; --model "
        "waltz-jig plays it (glsr-live models shows each model's metre)"]
    done = glsr_live("run", "--metre", "4/4", "--model", "waltz-jig", "--api", "jack")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "glsr-live run: --metre 4/4: the model waltz-jig plays two bars of 3/4, 6/8; --model "
        "melody plays it (glsr-live models shows each model's metre)"]


def test_a_four_four_model_takes_two_two_and_two_four_phrases():
    from glsr_live.catalog import resolve_model
    from glsr_live.model import Model

    info = Model(resolve_model(None)).info
    assert info.metre == "4/4"
    assert [info.plays_metre(m) for m in ("4/4", "2/2", "2/4", "3/4", "6/8")] == [
        True, True, True, False, False]


@pytest.mark.parametrize("args, message", [
    (["--knob", "tempo=1"], "no regularised attribute 'tempo'"),
    (["--sweep", "notes=1:2"], "--sweep wants NAME=FROM:TO:STEPS"),
    (["--knob", "notes"], "--knob wants NAME=VALUE"),
])
def test_render_bad_arguments(tiny_model_dir, tmp_path, args, message):
    source = tmp_path / "in.mid"
    write_phrase(source)
    done = glsr_live("render", str(source), "-o", str(tmp_path / "o.mid"), "--model",
                     str(tiny_model_dir), *args)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_render_of_a_file_that_is_not_midi(tiny_model_dir, tmp_path):
    bad = tmp_path / "song.mid"
    bad.write_text("hello")
    done = glsr_live("render", str(bad), "-o", str(tmp_path / "o.mid"), "--model",
                     str(tiny_model_dir))
    assert done.returncode == 2 and "not a readable MIDI file" in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_reports_latencies(tiny_model_dir):
    done = glsr_live("bench", "--model", str(tiny_model_dir), "--events", "200", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["knob_to_variation"]["count"] == 200
    assert 0 < result["knob_to_variation"]["p50_ms"] <= result["knob_to_variation"]["p99_ms"]
    assert result["phrase_end_to_first_note"]["count"] == 20
    for name in ("single_knob", "any_change", "value_target"):
        assert 0 < result[name]["p50_ms"] <= result[name]["p99_ms"], name
    # every lone turn was a table lookup, or the knob's centre: the phrase itself
    assert result["single_knob"]["lookups"] + result["single_knob"]["at_rest"] == 200


def test_bench_burst_times_knobs_on_a_captured_phrase_with_the_default_model():
    """The burst's knob moves must act on a phrase: with d = 32 the engine's prior draw moved
    the seeded phrases off the boundary the burst ticks, and it timed knobs on nothing."""
    result = run_burst(Model(resolve_model(None)), events=20)  # raises if it took no phrase
    assert result["knob_to_variation"]["count"] == 20


def test_render_target_finds_the_wanted_note_count_with_the_shipped_model(tmp_path):
    source, out = tmp_path / "in.mid", tmp_path / "out.mid"
    write_phrase(source)
    for wanted in (5, 6, 10):
        done = glsr_live("render", str(source), "-o", str(out), "--model", "bach-soprano",
                         "--target", f"notes={wanted}")
        assert done.returncode == 0, done.stderr
        assert f"notes {wanted} → {wanted}: {wanted} notes" in done.stdout
        assert sum(1 for n in read_notes(out) if n.start >= 8) == wanted
    far = glsr_live("render", str(source), "-o", str(out), "--model", "bach-soprano",
                    "--target", "notes=31")  # past where the axis goes: counted exactly
    assert far.returncode == 0 and "notes 31 → 31: 31 notes" in far.stdout
    beyond = glsr_live("render", str(source), "-o", str(out), "--model", "bach-soprano",
                       "--target", "notes=40")  # more than the 32 steps hold
    assert beyond.returncode == 0 and "(out of reach)" in beyond.stdout
    morph = glsr_live("render", str(source), "-o", str(out), "--model", "bach-soprano",
                      "--morph", str(source), "--sweep", "morph=0:1:3")
    assert morph.returncode == 0 and "morph=+1.00" in morph.stdout
    alone = glsr_live("render", str(source), "-o", str(out), "--sweep", "morph=0:1:3")
    assert alone.returncode == 2 and "needs --morph" in alone.stderr
    bad = glsr_live("render", str(source), "-o", str(out), "--target", "register=Q9")
    assert bad.returncode == 2 and "--target wants NAME=VALUE" in bad.stderr


def test_run_with_a_bad_preset_is_one_line(tiny_model_dir, tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text("[[knob]]\ncc = 20\ntarget = 'loudness'\n")
    done = glsr_live("run", "--model", str(tiny_model_dir), "--preset", str(preset), "--quiet")
    assert done.returncode == 2 and "loudness" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.jack
def test_ports_and_unknown_port_names_through_jack(tiny_model_dir):
    with jack_server() as name:
        env = jack_env(name)
        listing = glsr_live("ports", "--api", "jack", "--json", env=env)
        assert listing.returncode == 0, listing.stderr
        assert set(json.loads(listing.stdout)["jack"]) == {"inputs", "outputs"}
        done = glsr_live("run", "--api", "jack", "--model", str(tiny_model_dir), "--in",
                         "no such keyboard", "--quiet", env=env)
        assert done.returncode == 2 and "no MIDI input port matches" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_alsa_without_a_sound_system_is_one_line(tiny_model_dir):
    """These machines have no /dev/snd: the ALSA error must say what to do."""
    import os

    if os.path.exists("/dev/snd/seq"):
        pytest.skip("this machine has an ALSA sequencer")
    done = glsr_live("run", "--api", "alsa", "--model", str(tiny_model_dir), "--quiet")
    assert done.returncode == 2 and "--api jack" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("child, code, line", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", 3, "crashed in native MIDI code"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137, "killed (SIGKILL)"),
    ("raise SystemExit(2)", 2, None),
])
def test_supervisor_turns_a_crashed_daemon_into_one_line(child, code, line, capfd):
    from glsr_live.supervise import supervise

    assert supervise([], program=[sys.executable, "-c", child]) == code
    stderr = capfd.readouterr().err.strip()
    if line is None:
        assert stderr == ""
    else:
        assert line in stderr and len(stderr.splitlines()) == 1


def test_supervisor_forwards_sigterm_and_passes_the_exit_code_through():
    sleeper = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        "from glsr_live.supervise import supervise\n"
        "sys.exit(supervise([], program=[sys.executable, '-c', 'import signal, sys, time; "
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); print(1, flush=True); "
        "time.sleep(60)']))\n")], stdout=subprocess.PIPE, text=True)
    assert sleeper.stdout.readline().strip() == "1"
    time.sleep(0.1)
    sleeper.send_signal(signal.SIGTERM)
    assert sleeper.wait(timeout=10) == 0


def test_supervisor_kills_a_daemon_stuck_after_sigterm_and_shows_its_stacks():
    """A child that ignores SIGTERM stands for one stuck in native MIDI code: the supervisor
    prints its stacks (SIGUSR1), kills it and says so, instead of outliving the stop too."""
    child = ("import signal, sys, time; from glsr_live.supervise import enable_stack_dumps; "
             "enable_stack_dumps(); signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             "print(1, flush=True); time.sleep(60)")
    stuck = subprocess.Popen([sys.executable, "-c", (
        "import sys\n"
        "from glsr_live.supervise import supervise\n"
        f"sys.exit(supervise([], program=[sys.executable, '-c', {child!r}], stop_deadline=1.0))\n"
    )], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert stuck.stdout.readline().strip() == "1"
    stuck.send_signal(signal.SIGTERM)
    assert stuck.wait(timeout=10) == 1
    stderr = stuck.stderr.read()
    assert "most recent call first" in stderr, stderr  # faulthandler's stack of the sleep
    assert stderr.strip().splitlines()[-1].startswith("glsr-live run: the daemon had not stopped")


def test_presets_resolve_by_name_or_path(tmp_path):
    from glsr_live.catalog import resolve_preset
    from glsr_live.knobs import load_preset

    units = load_preset(resolve_preset("units"), {"notes", "register"})
    assert [k.mode for k in units.knobs[:2]] == ["value", "value"]
    assert resolve_preset(None).name == "default.toml"
    mine = tmp_path / "mine.toml"
    assert resolve_preset(str(mine)) == mine  # a missing file is the loader's one-line error


def test_render_register_target_is_in_the_players_pitches_for_an_octave_shifted_phrase(tmp_path):
    """A phrase two octaves below the model's range is fitted up by 24 semitones; the target is
    asked in the player's pitches and the variation comes back down: it must land there."""
    source, out = tmp_path / "low.mid", tmp_path / "out.mid"
    write_phrase(source, pitches=(43, 45, 47, 48, 50, 48, 47, 45))
    done = glsr_live("render", str(source), "-o", str(out), "--model", "bach-soprano",
                     "--target", "register=C3")
    assert done.returncode == 0, done.stderr
    assert "register C3 → " in done.stdout and "out of reach" not in done.stdout  # within 1
    played = [n.pitch for n in read_notes(out) if n.start >= 8]
    assert played and abs(sum(played) / len(played) - 48) <= 1
