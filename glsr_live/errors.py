"""User errors, importable without numpy or mido: the supervisor process imports only these."""

from __future__ import annotations


class ModelError(ValueError):
    """A model directory that cannot be used; the message is one line for the user."""


class MidiFileError(ValueError):
    """A MIDI file that cannot be read or holds no usable notes; one line for the user."""
