"""Piano-roll PNG files you can read: pitch names, bar lines and numbers, a caption per panel.

Drawn with Pillow (ImageDraw and its bundled FreeType font): the runtime has no plotting
library, and Pillow is a 4-5 MB wheel (about 22 MB installed) against matplotlib's 8 MB plus
its own dependencies. The phrase and each variation are panels, up to ``PANELS_PER_ROW`` to a
row; a variation's panel shows the phrase's notes as outlines, so what was kept is seen.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .tokens import Note
from .units import note_name

STEP_PX = 14
PITCH_PX = 9
PANELS_PER_ROW = 4
MARGIN_LEFT = 46  # pitch names
CAPTION_PX = 22  # a panel's caption above its bar numbers
BAR_NUMBER_PX = 14
GAP_PX = 10
BACKGROUND = (250, 250, 247)
PANEL = (255, 255, 255)
BAR_LINE = (120, 120, 120)
BEAT_LINE = (222, 222, 216)
C_ROW = (238, 238, 232)
TEXT = (40, 40, 40)
PHRASE = (90, 90, 90)
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


@dataclass(frozen=True)
class Layout:
    """Where things go: the pitch span, the grid, and the panels' size."""

    low: int
    high: int
    steps: int  # per panel
    steps_per_beat: int
    beats_per_bar: int

    @property
    def steps_per_bar(self) -> int:
        return self.steps_per_beat * self.beats_per_bar

    @property
    def panel_width(self) -> int:
        return self.steps * STEP_PX

    @property
    def panel_height(self) -> int:
        return (self.high - self.low + 1) * PITCH_PX

    @property
    def row_height(self) -> int:
        return CAPTION_PX + BAR_NUMBER_PX + self.panel_height + GAP_PX

    def origin(self, index: int) -> tuple[int, int]:
        """Top-left corner (x, y) of panel ``index``'s grid."""
        row, column = divmod(index, PANELS_PER_ROW)
        return (MARGIN_LEFT + column * (self.panel_width + GAP_PX),
                GAP_PX + row * self.row_height + CAPTION_PX + BAR_NUMBER_PX)

    def pitch_y(self, pitch: int) -> int:
        return (self.high - pitch) * PITCH_PX


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont:
    """The bundled font at ``size`` px, loaded once (every caption and name asks)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # a Pillow without FreeType: its bitmap font
        return ImageFont.load_default()


def render_roll(segments: list[list[Note]], steps_per_segment: int, steps_per_beat: int = 4,
                beats_per_bar: int = 4, labels: list[str] | None = None,
                originals: int = 1) -> Image.Image:
    """The picture of ``segments`` (the tune's ``originals`` phrases first, then each
    variation of them in turn), each with its label; a variation's panel outlines the notes
    of the phrase it varies."""
    pitches = [n.pitch for notes in segments for n in notes] or [60]
    layout = Layout(min(pitches) - 2, max(pitches) + 2, steps_per_segment, steps_per_beat,
                    beats_per_bar)
    count = max(1, len(segments))
    columns, rows = min(count, PANELS_PER_ROW), -(-count // PANELS_PER_ROW)
    image = Image.new("RGB", (MARGIN_LEFT + columns * (layout.panel_width + GAP_PX),
                              GAP_PX + rows * layout.row_height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    labels = labels or [""] * count
    for index, notes in enumerate(segments):
        x, y = layout.origin(index)
        draw_grid(draw, layout, x, y, first_bar=index * bars_in(layout) + 1)
        if index % PANELS_PER_ROW == 0:
            draw_pitch_names(draw, layout, y)
        draw.text((x, y - CAPTION_PX - BAR_NUMBER_PX + 2), labels[index], fill=TEXT,
                  font=font(15))
        part, phrase = divmod(index, originals)
        if part:
            draw_notes(draw, layout, x, y, segments[phrase], outline=PHRASE)
        colour = COLOURS[(part - 1) % len(COLOURS)] if part else PHRASE
        draw_notes(draw, layout, x, y, notes, fill=colour)
    return image


def bars_in(layout: Layout) -> int:
    return max(1, layout.steps // layout.steps_per_bar)


def draw_grid(draw: ImageDraw.ImageDraw, layout: Layout, x: int, y: int,
              first_bar: int) -> None:
    """A panel's background: C rows, beat lines, bar lines with their numbers above."""
    draw.rectangle((x, y, x + layout.panel_width, y + layout.panel_height), fill=PANEL)
    for pitch in range(layout.low, layout.high + 1):
        if pitch % 12 == 0:
            top = y + layout.pitch_y(pitch)
            draw.rectangle((x, top, x + layout.panel_width, top + PITCH_PX - 1), fill=C_ROW)
    bar_steps = layout.steps_per_bar
    for step in range(0, layout.steps + 1, layout.steps_per_beat):
        left = x + step * STEP_PX
        on_bar = step % bar_steps == 0
        draw.line((left, y, left, y + layout.panel_height), fill=BAR_LINE if on_bar else
                  BEAT_LINE, width=2 if on_bar else 1)
        if on_bar and step < layout.steps:
            draw.text((left + 3, y - BAR_NUMBER_PX), str(first_bar + step // bar_steps),
                      fill=BAR_LINE, font=font(11))


def draw_pitch_names(draw: ImageDraw.ImageDraw, layout: Layout, y: int) -> None:
    """Every C, E and G drawn (a name every 3-5 rows), named at the left of a row."""
    named = {p for p in range(layout.low, layout.high + 1) if p % 12 in (0, 4, 7)}
    for pitch in sorted(named):
        draw.text((4, y + layout.pitch_y(pitch) - 2), note_name(pitch), fill=TEXT,
                  font=font(10))


def draw_notes(draw: ImageDraw.ImageDraw, layout: Layout, x: int, y: int, notes: list[Note],
               fill: tuple[int, int, int] | None = None,
               outline: tuple[int, int, int] | None = None) -> None:
    for note in notes:
        top = y + layout.pitch_y(note.pitch) + 1
        left = x + note.onset * STEP_PX + 1
        right = left + note.length * STEP_PX - 3
        draw.rounded_rectangle((left, top, right, top + PITCH_PX - 3), radius=2, fill=fill,
                               outline=outline)


def write_roll(path: str | Path, segments: list[list[Note]], steps_per_segment: int,
               steps_per_beat: int = 4, beats_per_bar: int = 4,
               labels: list[str] | None = None, originals: int = 1) -> None:
    render_roll(segments, steps_per_segment, steps_per_beat, beats_per_bar, labels,
                originals).save(str(path))
