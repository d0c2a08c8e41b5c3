"""`glsr-live run` in a child process, so that a crash inside native MIDI code is one line too.

When the JACK server dies, libjack now and then kills its client with SIGSEGV before Python can
notice the lost server. Nothing can be closed then (the server is gone), but the user should
still get one clear line and the documented exit code 3, not a bare "Segmentation fault".
The parent imports nothing heavy, forwards SIGINT/SIGTERM/SIGHUP and passes the child's exit
code through.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

SUPERVISED = "GLSR_LIVE_SUPERVISED"  # set in the child: run the daemon itself
EXIT_MIDI_LOST = 3  # as glsr_live.live: the MIDI system went away
CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def wanted() -> bool:
    """Supervise unless this is the child already; POSIX only (process groups, crash signals)."""
    return os.name == "posix" and os.environ.get(SUPERVISED) != "1"


def follow_parent() -> None:
    """In the child: get SIGTERM (close notes, leave) if the supervisor itself is killed."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


def supervise(argv: list[str], program: list[str] | None = None) -> int:
    """Run ``glsr-live <argv>`` as a child and return its exit code, a crash as one line + 3."""
    program = program or [sys.executable, "-m", "glsr_live.cli"]
    # Own process group: a terminal's Ctrl-C reaches the parent only, which forwards it once.
    child = subprocess.Popen([*program, *argv],
                             env={**os.environ, SUPERVISED: "1"}, process_group=0)
    for signum in FORWARDED:
        signal.signal(signum, lambda received, _frame: child.send_signal(received))
    code = child.wait()  # retried after each forwarded signal (PEP 475)
    return code if code >= 0 else crash_code(signal.Signals(-code))


def crash_code(killed_by: signal.Signals) -> int:
    """One line for a child killed by a signal; the exit code to leave with."""
    if killed_by in CRASHES:
        print(f"\nglsr-live run: the daemon crashed in native MIDI code ({killed_by.name}); "
              "this happens when the JACK server stops - restart it, then glsr-live",
              file=sys.stderr)
        return EXIT_MIDI_LOST
    print(f"\nglsr-live run: the daemon was killed ({killed_by.name})", file=sys.stderr)
    return 128 + killed_by.value
