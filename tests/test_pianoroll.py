"""The piano roll: one captioned panel per segment, bar numbers, pitch names, at a set size."""

from __future__ import annotations

import numpy as np
from PIL import Image

from glsr_live.pianoroll import (
    CAPTION_PX,
    GAP_PX,
    PANELS_PER_ROW,
    PITCH_PX,
    STEP_PX,
    Layout,
    render_roll,
    write_roll,
)
from glsr_live.tokens import Note

PHRASE = [Note(0, 4, 60), Note(4, 4, 64), Note(8, 8, 67), Note(16, 16, 72)]
LOUDER = [Note(0, 2, 60), Note(2, 2, 62), Note(4, 4, 64), Note(8, 8, 67), Note(16, 16, 72)]


def ink(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """Pixels in ``box`` darker than the background: drawn text or lines."""
    pixels = np.asarray(image.crop(box).convert("L"))
    return int((pixels < 160).sum())


def test_segments_are_panels_in_rows_with_captions_and_the_grid(tmp_path):
    segments = [PHRASE] + [LOUDER] * 5  # six panels: a row of four, then two
    image = render_roll(segments, 32, labels=["your phrase"] + [f"notes +{i}" for i in range(5)])
    layout = Layout(58, 74, 32, 4, 4)
    assert image.width == layout.origin(PANELS_PER_ROW - 1)[0] + 32 * STEP_PX + GAP_PX
    assert image.height == GAP_PX + 2 * layout.row_height
    for index in range(6):
        x, y = layout.origin(index)
        assert ink(image, (x, y - CAPTION_PX - 14, x + 200, y - 14)) > 20, index  # caption
        assert ink(image, (x, y - 14, x + 20, y)) > 3, index  # its first bar's number
    x, y = layout.origin(6)  # the seventh place is empty: no panel there
    assert ink(image, (x, y - CAPTION_PX - 14, image.width, image.height)) == 0
    assert ink(image, (0, 0, 40, image.height)) > 50  # pitch names at the left
    assert PITCH_PX * (74 - 58 + 1) == layout.panel_height
    write_roll(tmp_path / "roll.png", segments, 32)
    assert Image.open(tmp_path / "roll.png").size == image.size
