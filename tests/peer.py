"""A separate JACK MIDI client for tests: a virtual output that sends a note per stdin line."""

import sys
import time

import mido

backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK", load=True)
port = backend.open_output(sys.argv[1], virtual=True, client_name=sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    pitch = int(line)
    port.send(mido.Message("note_on", note=pitch, velocity=90))
    time.sleep(0.05)
    port.send(mido.Message("note_off", note=pitch))
    print("sent", flush=True)
