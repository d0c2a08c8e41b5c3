"""Piano-roll PNG files written with zlib alone (the runtime has no plotting library)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from .tokens import Note

STEP_PX = 8
PITCH_PX = 5
BACKGROUND = (250, 250, 247)
BAR_LINE = (150, 150, 150)
BEAT_LINE = (220, 220, 215)
C_ROW = (236, 236, 230)
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def png_bytes(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG file bytes."""
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def render_roll(segments: list[list[Note]], steps_per_segment: int, steps_per_beat: int = 4,
                beats_per_bar: int = 4) -> np.ndarray:
    """(H, W, 3) image of segments laid side by side; each segment gets its own colour."""
    pitches = [n.pitch for notes in segments for n in notes] or [60]
    low, high = min(pitches) - 2, max(pitches) + 2
    rows, steps = high - low + 1, steps_per_segment * max(1, len(segments))
    image = np.empty((rows * PITCH_PX, steps * STEP_PX, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    for pitch in range(low, high + 1):
        if pitch % 12 == 0:
            row = (high - pitch) * PITCH_PX
            image[row: row + PITCH_PX] = C_ROW
    for step in range(0, steps, steps_per_beat):
        colour = BAR_LINE if step % (steps_per_beat * beats_per_bar) == 0 else BEAT_LINE
        image[:, step * STEP_PX] = colour
    for index, notes in enumerate(segments):
        colour = COLOURS[index % len(COLOURS)] if index else (60, 60, 60)
        for note in notes:
            top = (high - note.pitch) * PITCH_PX
            left = (index * steps_per_segment + note.onset) * STEP_PX + 1
            right = left + note.length * STEP_PX - 2
            image[top + 1: top + PITCH_PX - 1, left:right] = colour
    return image


def write_roll(path: str | Path, segments: list[list[Note]], steps_per_segment: int,
               steps_per_beat: int = 4, beats_per_bar: int = 4) -> None:
    image = render_roll(segments, steps_per_segment, steps_per_beat, beats_per_bar)
    Path(path).write_bytes(png_bytes(image))
