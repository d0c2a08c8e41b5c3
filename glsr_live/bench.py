"""glsr-live bench: how fast the engine turns a knob move or a phrase into playable notes."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import mido
import numpy as np

from .clock import InternalClock
from .engine import Engine
from .knobs import VALUE_RANGES, Knob, Options, Preset
from .model import Model

BENCH_BPM = 120.0


def bench_preset(model: Model, mode: str = "offset") -> Preset:
    """One knob per regularised attribute on CC 20, 21, ... (``mode="value"``: value knobs)."""
    knobs = tuple(Knob(20 + i, name, **value_range(name, mode))
                  for i, name in enumerate(model.info.axes))
    return Preset(Options(soft_takeover=False), knobs)


def value_range(name: str, mode: str) -> dict:
    if mode == "offset":
        return {}
    low, high = VALUE_RANGES.get(name, (0.0, 1.0))
    return {"min": low, "max": high, "mode": "value"}


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "count": 0}
    values = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(values, 50)), 3),
            "p99_ms": round(float(np.percentile(values, 99)), 3),
            "max_ms": round(float(values.max()), 3), "count": int(len(values))}


def rss_mib() -> float:
    """Resident memory now (Linux), else the peak the OS reports."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def play_phrase(engine: Engine, start: float, rng: np.random.Generator) -> None:
    """Feed one random monophonic phrase of L steps, starting at clock time ``start``.

    Its first note falls on ``start`` (the clock starts at the first note), so each phrase
    boundary falls where the burst ticks it.
    """
    info = engine.info
    step = engine.clock.step_seconds
    later = rng.choice(np.arange(1, info.grid.seq_len), size=rng.integers(3, 11), replace=False)
    onsets = np.sort(np.append(0, later))
    ends = list(onsets[1:]) + [info.grid.seq_len]
    for onset, end in zip(onsets, ends, strict=True):
        pitch = int(rng.integers(info.vocab.low, info.vocab.high + 1))
        engine.handle(mido.Message("note_on", note=pitch, velocity=90), start + onset * step)
        engine.handle(mido.Message("note_off", note=pitch), start + end * step - 1e-4)


def phrase_to_first_note(engine: Engine, boundary_time: float) -> float:
    """Seconds the engine needs at a phrase boundary: capture, encode, decode, first note."""
    started = time.perf_counter()
    engine.tick(boundary_time)
    return time.perf_counter() - started


def worker_refinement(engine: Engine) -> float:
    """Seconds the daemon's worker thread spends finding the new phrase's refined code (it
    runs between the loop's steps, in the bar before the code takes over; without it the
    next phrase boundary would find it on time and be timed with it)."""
    started = time.perf_counter()
    engine.prepare_refinement()
    return time.perf_counter() - started


def require_phrase(engine: Engine) -> None:
    """Knob timings mean nothing without a phrase: a knob with none decodes nothing."""
    if engine.phrase_z is None:
        raise RuntimeError("bench: the engine took no phrase")


def knob_latency(engine: Engine, knob: Knob, value: int, now: float) -> float:
    """Seconds from a CC to its variation ready to play (the move, then its decode)."""
    started = time.perf_counter()
    engine.handle(mido.Message("control_change", control=knob.cc, value=value), now)
    engine.settle()
    return time.perf_counter() - started


def run_burst(model: Model, events: int, seed: int = 0) -> dict:
    """Latency of ``events`` knob moves and of a few phrase boundaries."""
    rng = np.random.default_rng(seed)
    engine = Engine(model, bench_preset(model), InternalClock(BENCH_BPM), rng)
    phrase_seconds = engine.clock.step_seconds * model.info.grid.seq_len
    phrase_times, refinements = [], []
    for index in range(20):
        play_phrase(engine, index * phrase_seconds, rng)
        phrase_times.append(phrase_to_first_note(engine, (index + 1) * phrase_seconds))
        refinements.append(worker_refinement(engine))
    require_phrase(engine)
    knobs = engine.preset.knobs
    now = 21 * phrase_seconds
    knob_times = [knob_latency(engine, knobs[i % len(knobs)], int(rng.integers(0, 128)), now)
                  for i in range(events)]
    return {"model": str(model.directory), "provider": model.provider,
            "knob_to_variation": percentiles_ms(knob_times),
            "single_knob": single_knob(model, events, seed),
            "any_change": any_change(model, events, seed),
            "value_target": value_target(model, max(20, events // 10), seed),
            "value_search": value_target(model, max(20, events // 10), seed, prepared=False),
            "phrase_end_to_first_note": percentiles_ms(phrase_times),
            "refinement_in_worker": percentiles_ms(refinements)}


def engine_with_phrase(model: Model, seed: int, mode: str = "offset"
                       ) -> tuple[Engine, np.random.Generator, float]:
    rng = np.random.default_rng(seed)
    engine = Engine(model, bench_preset(model, mode), InternalClock(BENCH_BPM), rng)
    phrase_seconds = engine.clock.step_seconds * model.info.grid.seq_len
    play_phrase(engine, 0.0, rng)
    now = phrase_seconds  # the clock starts at the first note: tick until the phrase is in
    while engine.phrase_z is None and now < 3 * phrase_seconds:
        engine.tick(now)
        now += 0.001
    require_phrase(engine)
    return engine, rng, now


def single_knob(model: Model, events: int, seed: int) -> dict:
    """One knob turned on its own, as a player mostly does: its positions were decoded ahead
    (the daemon's worker does this after each phrase or other change)."""
    engine, rng, now = engine_with_phrase(model, seed)
    knob = engine.preset.knobs[0]
    engine.prepare_tables()
    lookups, rests = engine.timings.lookups, engine.timings.rests
    times, value = [], engine.knobs.values[0]
    for _ in range(events):
        value = (value + 1 + int(rng.integers(0, 127))) % 128  # always a move
        times.append(knob_latency(engine, knob, value, now))
    return {**percentiles_ms(times), "lookups": engine.timings.lookups - lookups,
            "at_rest": engine.timings.rests - rests}


def any_change(model: Model, events: int, seed: int) -> dict:
    """Two knobs in turn, nothing decoded ahead: every move is a model run."""
    engine, rng, now = engine_with_phrase(model, seed)
    knobs = engine.preset.knobs
    times = [knob_latency(engine, knobs[i % len(knobs)], int(rng.integers(0, 128)), now)
             for i in range(events)]
    return percentiles_ms(times)


def value_target(model: Model, events: int, seed: int, prepared: bool = True) -> dict:
    """A value knob ("6 notes") moved after a change of state. ``prepared``: the search along
    its axis was decoded ahead, as the daemon's worker does after each change (the move is a
    lookup and one decode); else the move searches 97 points itself."""
    engine, rng, now = engine_with_phrase(model, seed, mode="value")
    knob = engine.preset.knobs[0]
    times = []
    for _ in range(events):
        engine.tables.tables.clear()  # each move from a fresh state, not a cached search
        engine.knobs.values[0] = 64
        engine.knobs.touched.discard(0)
        if prepared:
            engine.prepare_tables()
        times.append(knob_latency(engine, knob, int(rng.integers(0, 128)), now))
    return percentiles_ms(times)


def run_soak(model: Model, seconds: float, seed: int = 0) -> list[dict]:
    """Phrases and a CC change every simulated millisecond for ``seconds`` of wall time."""
    rng = np.random.default_rng(seed)
    engine = Engine(model, bench_preset(model), InternalClock(BENCH_BPM), rng)
    phrase_seconds = engine.clock.step_seconds * model.info.grid.seq_len
    knobs, minutes, latencies = engine.preset.knobs, [], []
    started = minute_start = time.perf_counter()
    simulated, next_phrase = 0.0, 0.0
    while time.perf_counter() - started < seconds:
        if simulated >= next_phrase:
            play_phrase(engine, next_phrase, rng)
            next_phrase += phrase_seconds
        knob = knobs[int(rng.integers(len(knobs)))]
        latencies.append(knob_latency(engine, knob, int(rng.integers(0, 128)), simulated))
        engine.tick(simulated)
        simulated += 0.001
        if time.perf_counter() - minute_start >= 60 or time.perf_counter() - started >= seconds:
            minutes.append({"minute": len(minutes) + 1, "rss_mib": round(rss_mib(), 1),
                            **percentiles_ms(latencies)})
            print(json.dumps(minutes[-1]), file=sys.stderr, flush=True)
            latencies, minute_start = [], time.perf_counter()
    engine.stop()
    return minutes


def run_bench(args: argparse.Namespace, model_dir: Path) -> int:
    model = Model(model_dir)
    result = run_burst(model, args.events)
    if args.soak > 0:
        result["soak"] = run_soak(model, args.soak)
    if args.json:
        print(json.dumps(result))
        return 0
    for name in ("knob_to_variation", "single_knob", "any_change", "value_target",
                 "value_search", "phrase_end_to_first_note", "refinement_in_worker"):
        stats = result[name]
        print(f"{name:25s} p50 {stats['p50_ms']:.3f} ms  p99 {stats['p99_ms']:.3f} ms  "
              f"max {stats['max_ms']:.3f} ms  ({stats['count']} events)")
    for minute in result.get("soak", []):
        print(f"soak minute {minute['minute']:3d}: p50 {minute['p50_ms']:.3f} ms  p99 "
              f"{minute['p99_ms']:.3f} ms  RSS {minute['rss_mib']:.1f} MiB")
    print(f"model {model.directory} on {model.provider}")
    return 0
