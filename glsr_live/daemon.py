"""The realtime loop: ports in, engine, ports out; one stop Event, notes always closed."""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import mido

from .engine import Engine
from .inbox import PolledInbox
from .midifile import write_notes
from .record import SessionRecorder
from .tokens import tokens_to_notes, unfold_notes

MAX_WAIT_SECONDS = 0.005  # the loop wakes at its next step, a message, or after this
STALL_SECONDS = 0.02  # a loop that did not tick this long is a stall the recording notes
SETTLE_AHEAD_SECONDS = 0.015  # knob moves are decoded this long before their step is due
PORT_CHECK_SECONDS = 0.25  # how often the MIDI system and named peers are looked at (in a
#   thread of its own, through the ports' own clients: a stopped server is seen within 1 s)
LOOP_NICE = -10  # the loop's thread priority where the OS allows it (root, CAP_SYS_NICE)
WORKER_NICE = 5  # the table worker yields to the loop
BURST = 24  # messages per burst when closing many notes: a JACK period's MIDI buffer is small
BURST_GAP_SECONDS = 0.003  # two periods at 48 kHz / 64 frames
TABLE_POLL_SECONDS = 0.01  # how often the table worker looks for knob tables to compute


@dataclass
class Daemon:
    engine: Engine
    inport: object  # a PortKeeper (its inbox stamps arrivals) or anything with iter_pending()
    outport: object  # anything with send()
    clock: Callable[[], float] = time.perf_counter
    show_status: Callable[[Engine, float], None] | None = None  # the live view
    stop_event: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    notice: Callable[[str], None] = lambda line: None
    load_model: Callable[[object], object] | None = None  # directory -> model, for SIGHUP
    reload_event: threading.Event = field(default_factory=threading.Event)
    recorder: SessionRecorder | None = None  # --record: the session as a MIDI file
    kept: int = 0  # variations stored by the keep button
    ticked_to: float | None = None  # the engine time of the last tick (a replay stops there)

    def __post_init__(self) -> None:
        # Ports of ours stamp messages as they arrive; other ports are stamped when read.
        self.inbox = getattr(self.inport, "inbox", None) or PolledInbox(self.inport, self.clock)
        self.port_events: queue.SimpleQueue = queue.SimpleQueue()  # from the port watcher

    def engine_time(self, stamp: float) -> float:
        """The engine's time for a clock reading. When recording: seconds since the session
        began, floored to the recording's tick, so that a replay from the file sees the very
        times the live engine saw."""
        if self.recorder is None:
            return stamp
        return self.recorder.quantise(stamp - self.recorder.started)

    def now(self) -> float:
        return self.engine_time(self.clock())

    def send(self, messages: list[mido.Message], at: float | None = None) -> None:
        """Send ``messages``; the recording has them at ``at``, the engine time they were made
        for (a busy machine sends some late: the file keeps the grid they belong to, which a
        replay reproduces), else at the time they leave."""
        for message in messages:
            self.outport.send(message)
            self.sent += 1
            if self.recorder is not None:
                self.recorder.message("out", message, self.clock() - self.recorder.started
                                      if at is None else at)

    def send_paced(self, messages: list[mido.Message], at: float | None = None) -> None:
        """Send a long list in bursts, so no note-off is dropped by a full MIDI buffer."""
        for start in range(0, len(messages), BURST):
            if start:
                time.sleep(BURST_GAP_SECONDS)
            self.send(messages[start: start + BURST], at)

    def step(self) -> None:
        """Handle what arrived, in order of arrival, then play what is due.

        Before each message, the steps due by its arrival are played: so the order of steps
        and messages depends on their times only, and a recorded session replays the same.
        """
        now, arrivals = self.inbox.take()
        for stamp, message in arrivals:
            at = self.engine_time(stamp)
            if self.recorder is not None:
                self.recorder.message("in", message, at)
            with self.engine.lock:
                messages = self.engine.tick(at) + self.engine.handle(message, at)
            if message.type == "clock" and self.recorder is not None:
                self.recorder.follow_tempo(self.engine.clock.bpm, at)
            self.send_paced(messages, at)
            if message.type == "control_change":
                self.after_control(at)
            while self.engine.notices:
                self.notice(self.engine.notices.pop(0))
        last, self.ticked_to = self.ticked_to, self.engine_time(now)
        with self.engine.lock:
            messages = self.engine.tick(self.ticked_to)
        self.send_paced(messages, self.ticked_to)
        if self.recorder is not None:
            self.record_stall(last)
            self.recorder.maybe_flush()

    def record_stall(self, last: float | None) -> None:
        """When the loop did not tick for a while (a busy machine), the replay must not tick
        there either: the steps due then were played late, at once, as here."""
        if last is not None and self.ticked_to - last > STALL_SECONDS:
            self.recorder.stall(last, self.ticked_to)
        if self.engine.silent_steps:
            self.recorder.silent(self.engine.silent_steps, self.ticked_to)
            self.engine.silent_steps = []

    def seconds_to_next_step(self) -> float:
        """How long until the next grid step, or a note played late, is due (inf while the
        clock stands)."""
        positions = [at for at, _ in self.engine.deferred]
        if self.engine.next_step is not None:
            positions.append(self.engine.next_step)
        times = [self.engine.clock.time_of(at) for at in positions]
        times = [t for t in times if t is not None]
        return max(0.0, min(times) - self.now()) if times else float("inf")

    def settle_ahead(self) -> None:
        """Decode knob moves shortly before the step that plays them, so the step does not
        wait for the decode; earlier would decode a fast sweep's every CC for nothing."""
        if self.engine.stale and self.seconds_to_next_step() <= SETTLE_AHEAD_SECONDS:
            with self.engine.lock:
                self.engine.settle()

    def after_control(self, at: float) -> None:
        """Record the knob state; store the playing variation when the keep button asked."""
        if self.recorder is not None:
            self.recorder.knobs(self.engine.knob_state(), at)
        if self.engine.keep_requested:
            self.engine.keep_requested = False
            self.keep_variation()

    def keep_variation(self) -> None:
        if self.recorder is None:
            self.notice("keep: start with --record DIR to keep variations")
            return
        if self.engine.variation is None:
            self.notice("keep: nothing is playing yet")
            return
        self.kept += 1
        path = self.recorder.path.with_name(f"{self.recorder.path.stem}-keep{self.kept:03d}.mid")
        write_variation(path, self.engine)
        self.notice(f"kept variation {self.kept}: {path.name}")

    def prepare_tables(self) -> None:
        """Worker thread: a new phrase's refined code, then each knob's positions decoded
        ahead, so a knob turn is a lookup."""
        set_thread_nice(WORKER_NICE)
        while not self.stop_event.is_set():
            try:
                built = self.engine.prepare_refinement() + self.engine.prepare_tables()
            except Exception:  # a table is only a speed-up: the loop decodes without it
                built = 0
            self.stop_event.wait(0.0 if built else TABLE_POLL_SECONDS)

    def run(self) -> None:
        """Loop until stop(); on any way out, close every note (then re-raise errors)."""
        self.send_paced(self.engine.start_messages())
        next_status = 0.0
        workers = [threading.Thread(target=job, name=name, daemon=True) for job, name in
                   ((self.prepare_tables, "glsr-tables"), (self.watch_ports, "glsr-ports"))]
        for worker in workers:
            worker.start()
        playing = self.engine.model
        try:
            while not self.stop_event.is_set():
                self.step()
                if self.engine.model is not playing:
                    playing = self.engine.model
                    self.notice(f"now playing {model_name(playing)} (from this bar)")
                if self.reload_event.is_set():
                    self.reload_event.clear()
                    self.reload_model()
                self.take_port_events()
                if self.show_status is not None and self.clock() >= next_status:
                    self.show_status(self.engine, self.now())
                    next_status = self.clock() + 0.1
                self.settle_ahead()
                self.inbox.wait(min(MAX_WAIT_SECONDS, self.seconds_to_next_step()))
        finally:
            self.stop_event.set()  # the workers too
            self.close_notes()
            for worker in workers:
                worker.join(timeout=1.0)
            if self.recorder is not None:  # the end mark: where the engine last ticked
                self.recorder.end(self.ticked_to if self.ticked_to is not None
                                  else self.clock() - self.recorder.started)

    def request_reload(self, *_: object) -> None:
        """SIGHUP: reload the playing model from disk (a retrained one) at the next bar."""
        self.reload_event.set()

    def reload_model(self) -> threading.Thread | None:
        """Load the playing model's directory again in a thread (loading takes longer than a
        step; the loop keeps playing); a bad model keeps the old one playing."""
        directory = getattr(self.engine.model, "directory", None)
        if self.load_model is None or directory is None:
            self.notice("reload: this model was not loaded from a directory")
            return None
        loader = threading.Thread(target=self.load_and_swap, args=(directory,), daemon=True)
        loader.start()
        return loader

    def load_and_swap(self, directory) -> None:
        try:
            model = self.load_model(directory)
            with self.engine.lock:
                self.engine.request_model(model)
        except ValueError as error:  # ModelError, or a model of another time grid
            self.notice(f"reload failed, still playing the old model: {error}")
            return
        self.notice(f"reloaded {directory}: plays from the next bar")

    def watch_ports(self) -> None:
        """Worker thread: look at the ports twice a second, tell the loop what changed."""
        while not self.stop_event.wait(PORT_CHECK_SECONDS):
            for role, port in (("input", self.inport), ("output", self.outport)):
                check = getattr(port, "check", None)
                try:
                    event = check() if check is not None else None
                except Exception as error:  # PortError: the MIDI system is gone
                    self.port_events.put((role, port, error))
                    return
                if event is not None:
                    self.port_events.put((role, port, event))

    def take_port_events(self) -> None:
        """Act on what the watcher saw: silence our notes when the output peer left; raise
        when the MIDI system is gone."""
        while not self.port_events.empty():
            role, port, event = self.port_events.get()
            if isinstance(event, Exception):
                raise event
            if event == "lost" and role == "output":
                with self.engine.lock:
                    self.engine.player.panic()  # the peer cannot hear note-offs any more
                    self.engine.echo.panic()
                    self.engine.deferred = []
            self.notice(f"{role} port '{port.name}' {event}")

    def close_notes(self) -> None:
        """Every open note off, else All Notes Off on all channels; never raises."""
        try:
            self.send_paced(self.engine.stop())
            return
        except Exception:  # the engine's bookkeeping or the port failed: last resort below
            pass
        try:
            self.send_paced([mido.Message("control_change", channel=c, control=123, value=0)
                             for c in range(16)])
        except Exception:  # the output is gone: nothing can hear a note-off any more
            pass

    def stop(self, *_: object) -> None:
        self.stop_event.set()


def write_variation(path, engine: Engine) -> None:
    """The playing variation as a MIDI file, with the knob state that made it as text."""
    notes = unfold_notes(tokens_to_notes(engine.variation.tokens, engine.info.vocab),
                         engine.phrase.octave_shift if engine.phrase is not None else 0)
    bpm = getattr(engine.clock, "bpm", 120.0) or 120.0
    write_notes(path, notes, engine.info.grid, bpm,
                text=json.dumps({"model": model_name(engine.model), **engine.knob_state()}))


def raise_threads(nice: int = LOOP_NICE) -> None:
    """Every thread of this process now (the loop, rtmidi's and libjack's MIDI threads) to
    ``nice``, where the OS allows it (Linux, root or CAP_SYS_NICE). On a busy machine a JACK
    client thread without realtime scheduling that waits behind other processes misses its
    cycle, and what it sent in that cycle is lost. A Python thread holds the GIL for at most
    the switch interval before rtmidi's input callback gets it: 0.5 ms, not 5."""
    sys.setswitchinterval(0.0005)
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # not Linux
        threads = [threading.get_native_id()]
    for tid in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except (AttributeError, OSError):  # no right to raise the priority: as it was
            pass


def set_thread_nice(nice: int) -> None:
    """This thread's scheduling priority (Linux: per thread); ignored where not allowed."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # not Linux, or no right to raise the priority
        pass


def model_name(model: object) -> str:
    directory = getattr(model, "directory", None)
    return getattr(directory, "name", None) or str(directory or "the model")


def install_signal_handlers(daemon: Daemon) -> None:
    """SIGINT and SIGTERM stop the loop, which then closes every note and returns; SIGHUP
    reloads the model."""
    signal.signal(signal.SIGINT, daemon.stop)
    signal.signal(signal.SIGTERM, daemon.stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, daemon.request_reload)
