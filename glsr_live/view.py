"""The live terminal view (rich): redrawn in place, fitting any width from 60 columns up.

Rows: state, tempo, bar position and model; one bar per knob with its value in the knob's
unit and a mark where soft takeover waits for the hardware knob; the captured phrase and the
playing variation as small piano rolls on one pitch axis; the last few events. ``--quiet`` and
output that is not a terminal keep the plain one-line log instead.
"""

from __future__ import annotations

import io
import time
from collections import deque
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .knobs import BUTTONS
from .player import Variation
from .status import engine_state, kept_reading, knob_reading
from .tokens import METRE_BEATS, bar_steps
from .units import note_name

if TYPE_CHECKING:
    from .engine import Engine

MIN_WIDTH = 60
ROLL_ROWS = 7
EVENTS = 4


def knob_bar(engine: Engine, index: int, width: int) -> Text:
    """'━━━━━●────◆───': ● the value in effect; while soft takeover waits (yellow), ◆ is the
    hardware knob, which takes over once it reaches ●."""
    def cell(cc: int) -> int:
        return round(cc / 127 * (width - 1))

    position = cell(engine.knobs.values[index])
    cells = ["━" if i < position else "─" for i in range(width)]
    cells[position] = "●"
    waiting = not engine.knobs.picked_up[index]
    hardware = engine.knobs.last_physical.get(index)
    if waiting and hardware is not None:
        cells[cell(hardware)] = "◆"
    return Text("".join(cells), style="yellow" if waiting else "")


def knob_rows(engine: Engine, width: int) -> Table:
    table = Table.grid(padding=(0, 1))
    reading_width = 22
    bar_width = max(8, min(40, width - 12 - reading_width - 3))
    table.add_column(width=11, no_wrap=True)
    table.add_column(width=bar_width, no_wrap=True)
    table.add_column(width=reading_width, no_wrap=True, overflow="ellipsis")
    for index, knob in enumerate(engine.preset.knobs):
        if knob.target in BUTTONS:
            continue
        waiting = "" if engine.knobs.picked_up[index] else " ◆ pick up"
        table.add_row(Text(knob.target[:11]), knob_bar(engine, index, bar_width),
                      Text(knob_reading(engine, index) + waiting))
    return table


def pitches_of(tokens: np.ndarray | None, vocab, shift: int) -> Variation | None:
    if tokens is None:
        return None
    return Variation.from_tokens(tokens, vocab, -shift)


def roll_lines(variation: Variation | None, low: int, high: int, rows: int,
               cell: int = 1, length: int = 32) -> list[str]:
    """``rows`` lines, ``cell`` characters a step: '█' onset, '▬' held, ' ' silent; top =
    ``high``; an empty roll is ``length`` steps."""
    length = length if variation is None else len(variation.sounding)
    grid = [[" " * cell] * length for _ in range(rows)]
    if variation is not None:
        span = max(1, high - low)
        for step, pitch in enumerate(variation.sounding.tolist()):
            if pitch < 0:
                continue
            row = rows - 1 - int(np.clip((pitch - low) / span * (rows - 1) + 0.5, 0, rows - 1))
            grid[row][step] = ("█" if variation.onset[step] else "▬") + "▬" * (cell - 1)
    return ["".join(line) for line in grid]


def rolls(engine: Engine, width: int) -> Table:
    """The captured phrase and the playing variation, on one pitch axis."""
    phrase = pitches_of(engine.phrase.tokens if engine.phrase is not None else None,
                        engine.info.vocab, engine.pitch_shift())
    playing = engine.variation  # already in the player's pitches
    sounding = [v.sounding[v.sounding >= 0] for v in (phrase, playing) if v is not None]
    pitches = np.concatenate(sounding) if sounding else np.array([60, 72])
    low, high = (int(pitches.min()), int(pitches.max())) if len(pitches) else (60, 72)
    cell = 2 if width >= 4 + 2 * 64 + 8 else 1  # wide terminals: two columns a step
    steps = engine.info.grid.seq_len
    left = roll_lines(phrase, low, high, ROLL_ROWS, cell, steps)
    right = roll_lines(playing, low, high, ROLL_ROWS, cell, steps)
    labels = [note_name(high)] + [""] * (ROLL_ROWS - 2) + [note_name(low)]
    table = Table.grid(padding=(0, 1))
    table.add_column(width=4, no_wrap=True)
    table.add_column(no_wrap=True)
    kept = kept_reading(engine)
    playing_title = f"playing ({kept})" if kept else "playing"
    if width >= 4 + 2 * 32 + 8:  # side by side
        table.add_column(no_wrap=True)
        table.add_row("", Text("phrase", style="bold"), Text(playing_title, style="bold"))
        for label, a, b in zip(labels, left, right, strict=True):
            table.add_row(label, Text(a, style="cyan"), Text(b, style="green"))
        return table
    for title, lines, style in (("phrase", left, "cyan"), (playing_title, right, "green")):
        table.add_row("", Text(title, style="bold"))
        for label, line in zip(labels, lines, strict=True):
            table.add_row(label, Text(line, style=style))
    return table


def playing_model_name(engine: Engine, fallback: str) -> str:
    """The directory name of the model playing now (a Program Change or reload swaps it)."""
    directory = getattr(engine.model, "directory", None)
    return getattr(directory, "name", None) or fallback


class LiveView:
    """The redrawn view; ``event`` adds a line to its log (newest last)."""

    def __init__(self, model_name: str, console: Console | None = None,
                 metre: str | None = None):
        self.console = console or Console(stderr=True)
        self.model_name = model_name  # until the engine's model says otherwise
        self.metre = metre  # what is playing (None: the model's first metre)
        self.events: deque[str] = deque(maxlen=EVENTS)
        self.last_phrase = None
        self.live: Live | None = None
        self.offset = 0.0  # the engine's time minus time.perf_counter()

    def event(self, line: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {line}")

    def renderable(self, engine: Engine, now: float, width: int | None = None) -> Group:
        width = max(MIN_WIDTH, width or self.console.width)
        if engine.phrase is not None and engine.phrase is not self.last_phrase:
            self.last_phrase = engine.phrase
            self.event(f"phrase captured ({int((engine.phrase.tokens >= 2).sum())} notes)")
        # events wrap: a reload's reason is read whole, not cut at the edge
        return Group(self.header(engine, now), knob_rows(engine, width), rolls(engine, width),
                     Text("\n".join(self.events) or "waiting for a phrase…", style="dim",
                          overflow="fold"))

    def header(self, engine: Engine, now: float) -> Text:
        position = engine.clock.position(now) if engine.clock.running else None
        metre = self.metre or engine.info.metres[0]
        where = "—"
        if position is not None:  # bars and felt beats of the metre (6/8: two dotted quarters)
            bar, step = divmod(int(position), bar_steps(metre))
            where = f"bar {bar + 1}.{step // METRE_BEATS[metre][0] + 1}"
        bpm = getattr(engine.clock, "bpm", 0.0) or 0.0
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{engine_state(engine):9s}", style="bold")
        text.append(f" {bpm:5.1f} BPM  {metre}  {where:10s} model "
                    f"{playing_model_name(engine, self.model_name)}")
        return text

    def show(self, engine: Engine, now: float) -> None:
        """Start redrawing (the daemon calls this often; only the first call acts).

        rich redraws ten times a second from its own thread, which builds the view under the
        engine's lock and lays it out outside it: the daemon's loop never waits for a redraw.
        The view has the terminal's alternate screen to itself (as top does), redrawn whole
        from its top-left corner: a resized terminal keeps no lines of the old layout.
        """
        self.offset = now - time.perf_counter()
        if self.live is None:
            self.live = Live(console=self.console, screen=True, refresh_per_second=10,
                             get_renderable=lambda: self.snapshot(engine))
            self.live.start()

    def snapshot(self, engine: Engine) -> Group:
        with engine.lock:  # the engine's time runs at time.perf_counter's pace
            return self.renderable(engine, time.perf_counter() + self.offset)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def render_text(view: LiveView, engine: Engine, now: float, width: int) -> str:
    """The view as plain text at ``width`` columns (tests, screenshots in notes)."""
    console = Console(width=width, record=True, color_system=None, force_terminal=False,
                      file=io.StringIO())
    console.print(view.renderable(engine, now, width))
    return console.export_text()
