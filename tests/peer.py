"""A separate JACK MIDI client for tests: a virtual output that sends a note per stdin line."""

import sys
import time

import mido

backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK", load=True)
port = backend.open_output(sys.argv[1], virtual=True, client_name=sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    if line.startswith("cc"):
        _, control, value = line.split()
        port.send(mido.Message("control_change", control=int(control), value=int(value)))
        print("sent", flush=True)
        continue
    pitch = int(line)
    port.send(mido.Message("note_on", note=pitch, velocity=90))
    time.sleep(0.05)
    port.send(mido.Message("note_off", note=pitch))
    print("sent", flush=True)
