"""Incoming MIDI stamped when the MIDI system delivers it, not when the loop gets round to it.

rtmidi calls ``put`` from its own thread as each message arrives; the daemon's loop calls
``take``. Both hold one lock while they read the clock, so every message stamped at or before
the time ``take`` returns is among the messages it returns: the loop can then play every grid
step up to that time knowing no earlier message is still on its way, which makes a live
session and its replay handle the same messages between the same steps.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import mido

POLL_SECONDS = 0.0005

class Inbox:
    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.lock = threading.Lock()
        self.items: deque[tuple[float, mido.Message]] = deque()
        self.arrived = threading.Event()  # wakes a loop waiting for its next step early

    def put(self, message: mido.Message) -> None:
        """rtmidi's callback: stamp and queue one message."""
        with self.lock:
            self.items.append((self.clock(), message))
        self.arrived.set()

    def take(self) -> tuple[float, list[tuple[float, mido.Message]]]:
        """(now, [(stamp, message)]): every message that arrived by ``now``, oldest first."""
        self.arrived.clear()
        with self.lock:
            now = self.clock()
            items = list(self.items)
            self.items.clear()
        return now, items

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less if a message arrives."""
        if seconds > 0:
            self.arrived.wait(seconds)


class PolledInbox:
    """An ``Inbox`` over a port that only offers ``iter_pending()`` (in-memory test ports,
    `learn`): messages are stamped when read."""

    def __init__(self, port, clock: Callable[[], float] = time.perf_counter):
        self.port, self.clock = port, clock
        self.arrived = threading.Event()

    def take(self) -> tuple[float, list[tuple[float, mido.Message]]]:
        items = []
        for message in self.port.iter_pending():
            items.append((self.clock(), message))
        return self.clock(), items

    def wait(self, seconds: float) -> None:
        """A port without stamps is polled: at least every half millisecond."""
        if seconds > 0:
            self.arrived.wait(min(seconds, POLL_SECONDS))
