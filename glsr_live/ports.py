"""Opening MIDI ports through mido's rtmidi backend: ALSA, JACK, CoreMIDI or WinMM.

Every failure a user can cause (no MIDI system, an unknown or ambiguous port name, virtual
ports on Windows) is a ``PortError`` with one line that says what to do.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mido

from .inbox import Inbox

API_NAMES = {"alsa": "LINUX_ALSA", "jack": "UNIX_JACK", "coremidi": "MACOSX_CORE",
             "winmm": "WINDOWS_MM"}
CLIENT_NAME = "glsr-live"


class PortError(RuntimeError):
    """A port problem the user can fix; the message is one line."""


@contextmanager
def quiet_native_stderr():
    """Silence what ALSA/JACK's C libraries print on fd 2; our own error line says it better."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def compiled_apis() -> list[str]:
    """Our names of the APIs python-rtmidi was built with, in the order it prefers them."""
    import mido.backends.rtmidi as backend

    by_rtmidi = {v: k for k, v in API_NAMES.items()}
    return [by_rtmidi[name] for name in backend.get_api_names() if name in by_rtmidi]


def default_api() -> str:
    if sys.platform == "darwin":
        return "coremidi"
    if sys.platform.startswith("win"):
        return "winmm"
    return "alsa"


def backend_for(api: str) -> mido.Backend:
    """The mido backend for ``api`` ('auto' = the platform's usual system)."""
    name = default_api() if api == "auto" else api
    if name not in API_NAMES:
        raise PortError(f"unknown MIDI API {api!r}; choose one of auto, {', '.join(API_NAMES)}")
    if name not in compiled_apis():
        raise PortError(f"MIDI API {name!r} is not available here "
                        f"(available: {', '.join(compiled_apis()) or 'none'})")
    return mido.Backend(f"mido.backends.rtmidi/{API_NAMES[name]}", load=True)


def _names(backend: mido.Backend, kind: str, api: str) -> list[str]:
    try:
        with quiet_native_stderr():
            return list(backend.get_input_names() if kind == "input"
                        else backend.get_output_names())
    except Exception as error:  # rtmidi raises SystemError/RtMidiError without a MIDI system
        raise PortError(no_system_message(api, error)) from None


def no_system_message(api: str, error: Exception) -> str:
    hint = {"alsa": "is the ALSA sequencer loaded (/dev/snd/seq)? or try --api jack",
            "jack": "is a JACK server running?"}.get(api, "is a MIDI system available?")
    return f"cannot reach the MIDI system ({api}): {str(error).strip() or type(error).__name__}" \
           f"; {hint}"


def is_ours(port_name: str) -> bool:
    """A port of this program's own client (ALSA and JACK name ports 'client:port')."""
    return port_name.split(":", 1)[0].strip().startswith(CLIENT_NAME) and ":" in port_name


def theirs(names: list[str]) -> list[str]:
    """The port names that are not our own: what a user's port query may pick."""
    return [n for n in names if not is_ours(n)]


def match_port(query: str, names: list[str], kind: str) -> str:
    """The one port whose name equals or contains ``query`` (case-insensitive)."""
    if query in names:
        return query
    found = [n for n in names if query.lower() in n.lower()]
    if len(found) == 1:
        return found[0]
    listing = ", ".join(repr(n) for n in names) or "none"
    if not found:
        raise PortError(f"no MIDI {kind} port matches {query!r}; {kind} ports: {listing}")
    raise PortError(f"{query!r} matches several MIDI {kind} ports: "
                    f"{', '.join(repr(n) for n in found)}; give more of the name")


@dataclass(frozen=True)
class PortRequest:
    """What to open: a port by (partial) name, or a virtual port of ours."""

    kind: str  # "input" or "output"
    name: str | None = None
    virtual: str | None = None


def open_port(backend: mido.Backend, request: PortRequest, api: str, callback=None):
    """Open an existing port by partial name, or create a virtual one; an input with a
    ``callback`` hands each message to it from rtmidi's thread as it arrives."""
    resolved = default_api() if api == "auto" else api
    try:
        with quiet_native_stderr():
            return _open(backend, request, resolved, callback)
    except PortError:
        raise
    except Exception as error:  # rtmidi errors when the system is missing or refuses
        raise PortError(no_system_message(resolved, error)) from None


def _open(backend: mido.Backend, request: PortRequest, resolved: str, callback=None):
    extra = {"callback": callback} if callback is not None else {}
    opener = backend.open_input if request.kind == "input" else backend.open_output
    if request.name is not None:
        name = match_port(request.name, theirs(_names(backend, request.kind, resolved)),
                          request.kind)
        return opener(name, **extra)  # mido makes any port with a client_name virtual
    if resolved == "winmm":
        raise PortError("Windows cannot create virtual MIDI ports: create a loopMIDI port "
                        f"and pass it with --{'in' if request.kind == 'input' else 'out'}")
    return opener(request.virtual, virtual=True, client_name=CLIENT_NAME, **extra)


def list_ports(apis: list[str]) -> dict[str, dict[str, list[str] | str]]:
    """Input and output port names per API; an unreachable API reports its error line."""
    listing: dict[str, dict[str, list[str] | str]] = {}
    for api in apis:
        try:
            backend = backend_for(api)
            listing[api] = {"inputs": _names(backend, "input", api),
                            "outputs": _names(backend, "output", api)}
        except PortError as error:
            listing[api] = {"error": str(error)}
    return listing


def jack_server_socket() -> Path | None:
    """jack2's request socket on Linux, /dev/shm/jack_<server>_<uid>_0, if it is there."""
    if not hasattr(os, "getuid"):
        return None
    name = os.environ.get("JACK_DEFAULT_SERVER") or "default"
    path = Path(f"/dev/shm/jack_{name}_{os.getuid()}_0")
    return path if path.exists() else None


def socket_answers(path: Path) -> bool | None:
    """True if a server accepts on ``path``, False if none is there (gone for sure), None if
    the connect failed otherwise (try again)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        except OSError:
            return None
    return True


class SystemGone(PortError):
    """The MIDI system is certainly gone (no retries needed)."""


FAILED_CHECKS_BEFORE_GONE = 3  # at one check per 0.25 s: the system is gone within 0.75 s


class PortKeeper:
    """A port opened by name that is reopened when its peer disappears and comes back.

    Virtual ports are ours and never go away while the MIDI system runs. ``check()`` is cheap
    enough to call twice a second; for either kind it raises ``PortError`` when the MIDI system
    itself is gone (a stopped JACK server). An input keeper stamps each message as rtmidi
    delivers it (``inbox``).
    """

    def __init__(self, backend: mido.Backend, request: PortRequest, api: str):
        self.backend, self.request, self.api = backend, request, api
        self.inbox = Inbox() if request.kind == "input" else None
        self.port = open_port(backend, request, api, self.callback)
        self.swap = threading.Lock()  # the watcher thread replaces the port the loop sends on
        self.peer = self.port.name if request.name is not None else None
        self.lost = False
        self.failures = 0  # failed checks in a row
        self.server = jack_server_socket() if api == "jack" else None

    def check(self) -> str | None:
        """Reconnect if needed; returns 'lost' or 'reconnected' when that happened.

        A port list or open that fails while clients come and go is tried again at the next
        check; only ``FAILED_CHECKS_BEFORE_GONE`` failures in a row mean the system is gone.
        """
        try:
            self.probe_system()
            event = self.reconcile() if self.peer is not None else None
        except SystemGone:
            raise
        except PortError:
            self.failures += 1
            if self.failures >= FAILED_CHECKS_BEFORE_GONE:
                raise
            return None
        self.failures = 0
        return event

    @property
    def callback(self):
        return self.inbox.put if self.inbox is not None else None

    def probe_system(self) -> None:
        """Raise PortError if the MIDI system stopped answering.

        With jack2 the server's request socket is asked (a connect, ~10 us: a port list on a
        client of a stopped server can go on answering from its stale shared memory); where
        there is no such socket (another MIDI system, JACK 1, PipeWire) a port list that is
        empty, not even our other port in it, means the system is gone.
        """
        if self.server is not None:
            answer = socket_answers(self.server)
            if answer is None:
                raise PortError(no_system_message(self.api, RuntimeError("no answer")))
            if not answer:
                raise SystemGone(no_system_message(self.api, RuntimeError("the server is gone")))
            return
        self.listing()

    def listing(self) -> list[str]:
        """The ports this port's kind can connect to, listed by the port's own client.

        Listing through the backend opens a new client: with JACK that takes ~85 ms and holds
        Python's GIL throughout, so the daemon's loop would stall twice a second. The port's own
        rtmidi object lists at once. It always sees at least the daemon's other port, so an
        empty list means the system stopped answering (a stopped JACK server lists nothing).
        """
        own = getattr(self.port, "_rt", None)  # mido's rtmidi port keeps its rtmidi object here
        if own is None:
            return _names(self.backend, self.request.kind, self.api)
        try:
            with quiet_native_stderr():
                names = list(own.get_ports())
        except Exception as error:  # rtmidi raises SystemError/RtMidiError without a system
            raise PortError(no_system_message(self.api, error)) from None
        if not names:
            raise PortError(no_system_message(self.api, RuntimeError("it lists no ports")))
        return names

    def reconcile(self) -> str | None:
        names = self.listing()
        if not self.lost:
            if self.peer in names:
                return None
            self.lost = True
            return "lost"
        back = self.peer if self.peer in names else self.rematch(names)
        if back is None:
            return None
        fresh = open_port(self.backend, PortRequest(self.request.kind, back), self.api,
                          self.callback)
        with self.swap:
            old, self.port = self.port, fresh
            self.peer, self.lost = back, False
        old.close()
        return "reconnected"

    def rematch(self, names: list[str]) -> str | None:
        """The port the user's own query picks now: a re-plugged ALSA device comes back with
        new client numbers, a restarted JACK client under a suffixed name."""
        try:
            return match_port(self.request.name, theirs(names), self.request.kind)
        except PortError:
            return None

    def iter_pending(self):
        return self.port.iter_pending()

    def send(self, message) -> None:
        with self.swap:
            if not self.lost:
                self.port.send(message)

    @property
    def name(self) -> str:
        return self.port.name

    def close(self) -> None:
        self.port.close()
