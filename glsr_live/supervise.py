"""`glsr-live run` in a child process, so that a crash inside native MIDI code is one line too.

When the JACK server dies, libjack now and then kills its client with SIGSEGV before Python can
notice the lost server. Nothing can be closed then (the server is gone), but the user should
still get one clear line and the documented exit code 3, not a bare "Segmentation fault".
The parent imports nothing heavy, forwards SIGINT/SIGTERM/SIGHUP (and SIGUSR1, which makes the
child print every thread's stack) and passes the child's exit code through. A child that has not
stopped some seconds after SIGINT/SIGTERM is stuck (a native MIDI call that never returns keeps
even its Python signal handler from running): its stacks are printed, it is killed, and the
parent says so in one line.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import subprocess
import sys
import time

SUPERVISED = "GLSR_LIVE_SUPERVISED"  # set in the child: run the daemon itself
EXIT_FAILURE = 1  # as glsr_live.cli: something unexpected
EXIT_MIDI_LOST = 3  # as glsr_live.live: the MIDI system went away


def signals(*names: str) -> tuple[signal.Signals, ...]:
    """The named signals this platform has (Windows lacks SIGHUP, SIGBUS and SIGUSR1)."""
    return tuple(getattr(signal, name) for name in names if hasattr(signal, name))


CRASHES = set(signals("SIGSEGV", "SIGBUS", "SIGABRT", "SIGILL", "SIGFPE"))
STOPS = (signal.SIGINT, signal.SIGTERM)
FORWARDED = (*STOPS, *signals("SIGHUP", "SIGUSR1"))
STOP_DEADLINE_SECONDS = 8.0  # a daemon closes its notes and ports well within 3 s
WAIT_POLL_SECONDS = 0.2
DUMP_SECONDS = 0.5  # time the child gets to print its stacks before it is killed


def wanted() -> bool:
    """Supervise unless this is the child already; POSIX only (process groups, crash signals)."""
    return os.name == "posix" and os.environ.get(SUPERVISED) != "1"


def follow_parent() -> None:
    """In the child: get SIGTERM (close notes, leave) if the supervisor itself is killed."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


def silence_native_stderr() -> None:
    """In the child: what C libraries print on fd 2 goes nowhere; Python's stderr (our one
    line, the view, stack dumps) moves to a copy of the old fd 2, a terminal still if it was.

    libjack prints "Server is not running" and the like from its own threads when the server
    stops: the user should read glsr-live's one line instead. GLSR_LIVE_DEBUG=1 keeps them.
    """
    if os.environ.get("GLSR_LIVE_DEBUG"):
        return
    sys.stderr.flush()
    copy = os.dup(2)
    sys.stderr = os.fdopen(copy, "w", buffering=1, encoding=sys.stderr.encoding,
                           errors="backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def enable_stack_dumps() -> None:
    """In the child: SIGUSR1 prints every thread's Python stack to stderr, even while the main
    thread is stuck in native code (faulthandler answers from C)."""
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)


def supervise(argv: list[str], program: list[str] | None = None,
              stop_deadline: float = STOP_DEADLINE_SECONDS) -> int:
    """Run ``glsr-live <argv>`` as a child and return its exit code, a crash as one line + 3,
    a child stuck for ``stop_deadline`` seconds after a stop signal as its stacks, one line + 1."""
    program = program or [sys.executable, "-m", "glsr_live.cli"]
    # Own process group: a terminal's Ctrl-C reaches the parent only, which forwards it once.
    child = subprocess.Popen([*program, *argv],
                             env={**os.environ, SUPERVISED: "1"}, process_group=0)
    stop_asked: list[float] = []  # when the first SIGINT/SIGTERM was forwarded

    def forward(received: int, _frame: object) -> None:
        child.send_signal(received)
        if received in STOPS and not stop_asked:
            stop_asked.append(time.monotonic())

    for signum in FORWARDED:
        signal.signal(signum, forward)
    code = wait_for_child(child, stop_asked, stop_deadline)
    if code is None:
        return kill_stuck(child, stop_deadline)
    return code if code >= 0 else crash_code(signal.Signals(-code))


def wait_for_child(child: subprocess.Popen, stop_asked: list[float], deadline: float
                   ) -> int | None:
    """The child's exit code, or None once it has outlived a stop signal by ``deadline``."""
    while True:
        try:
            return child.wait(timeout=WAIT_POLL_SECONDS)
        except subprocess.TimeoutExpired:
            if stop_asked and time.monotonic() - stop_asked[0] > deadline:
                return None


def kill_stuck(child: subprocess.Popen, deadline: float) -> int:
    """Print a stuck child's stacks (SIGUSR1), kill it, say so in one line."""
    child.send_signal(signal.SIGUSR1)
    time.sleep(DUMP_SECONDS)
    child.kill()
    child.wait()
    print(f"\nglsr-live run: the daemon had not stopped {deadline:g} s after the stop signal "
          "(stuck in native MIDI code?); killed it, its threads' stacks are above",
          file=sys.stderr)
    return EXIT_FAILURE


def crash_code(killed_by: signal.Signals) -> int:
    """One line for a child killed by a signal; the exit code to leave with."""
    if killed_by in CRASHES:
        print(f"\nglsr-live run: the daemon crashed in native MIDI code ({killed_by.name}); "
              "this happens when the JACK server stops - restart it, then glsr-live",
              file=sys.stderr)
        return EXIT_MIDI_LOST
    print(f"\nglsr-live run: the daemon was killed ({killed_by.name})", file=sys.stderr)
    return 128 + killed_by.value
