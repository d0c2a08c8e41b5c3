"""Where we are on the 16th-note grid: an internal tempo, or following MIDI clock.

Both clocks answer ``position(now)`` (float grid steps since start, None while stopped) and
``time_of(step)`` (when a step falls, for scheduling). Time is always passed in, so tests drive
it without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

PPQN = 24  # MIDI clock ticks per quarter note
SPP_STEPS = 6  # MIDI song position pointer counts in 16ths = 6 ticks


@dataclass
class InternalClock:
    """A steady tempo that starts when asked."""

    bpm: float = 120.0
    steps_per_beat: int = 4
    started_at: float | None = None

    def __post_init__(self) -> None:
        if not 20.0 <= self.bpm <= 400.0:
            raise ValueError(f"tempo must be 20..400 BPM, got {self.bpm}")

    @property
    def running(self) -> bool:
        return self.started_at is not None

    @property
    def step_seconds(self) -> float:
        return 60.0 / self.bpm / self.steps_per_beat

    def start(self, now: float) -> None:
        self.started_at = now

    def stop(self) -> None:
        self.started_at = None

    def position(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return (now - self.started_at) / self.step_seconds

    def time_of(self, step: float) -> float | None:
        if self.started_at is None:
            return None
        return self.started_at + step * self.step_seconds

    def handle(self, message, now: float) -> str | None:
        """The internal clock ignores incoming realtime messages."""
        return None


@dataclass
class MidiClock:
    """Follows 24 ppqn MIDI clock, start/stop/continue and song position pointer.

    The grid position advances by exactly one step every ``PPQN / steps_per_beat`` ticks, so
    notes land on the sender's ticks; the tempo (for scheduling within a step and for the
    status line) is estimated from tick intervals with exponential smoothing.
    """

    steps_per_beat: int = 4
    smoothing: float = 0.1
    running: bool = False
    ticks: int = 0
    last_tick_at: float | None = None
    tick_seconds: float = 60.0 / 120.0 / PPQN

    @property
    def ticks_per_step(self) -> int:
        return PPQN // self.steps_per_beat

    @property
    def bpm(self) -> float:
        return 60.0 / (self.tick_seconds * PPQN)

    @property
    def step_seconds(self) -> float:
        return self.tick_seconds * self.ticks_per_step

    def handle(self, message, now: float) -> str | None:
        """Update from a realtime message; returns 'start', 'stop', 'continue', 'seek' or None."""
        kind = message.type
        if kind == "clock":
            self._tick(now)
        elif kind == "start":
            self.running, self.ticks, self.last_tick_at = True, 0, None
            return "start"
        elif kind == "stop":
            self.running = False
            return "stop"
        elif kind == "continue":
            self.running, self.last_tick_at = True, None
            return "continue"
        elif kind == "songpos":
            self.ticks, self.last_tick_at = message.pos * SPP_STEPS, None
            return "seek"
        return None

    def _tick(self, now: float) -> None:
        if not self.running:
            return
        if self.last_tick_at is not None:
            interval = now - self.last_tick_at
            if 0.0005 < interval < 0.2:  # 12.5..5000 BPM; ignore bursts and gaps
                self.tick_seconds += self.smoothing * (interval - self.tick_seconds)
        self.last_tick_at = now
        self.ticks += 1

    def position(self, now: float) -> float | None:
        """Steps completed by the ticks received (no extrapolation past the last tick)."""
        if not self.running:
            return None
        return self.ticks / self.ticks_per_step

    def time_of(self, step: float) -> float | None:
        if not self.running or self.last_tick_at is None:
            return None
        return self.last_tick_at + (step * self.ticks_per_step - self.ticks) * self.tick_seconds
