"""The runtime never imports torch, music21 or glsr_train (fast start, no torch needed)."""

import subprocess
import sys

MODULES = ["glsr_live." + m for m in (
    "attributes", "bench", "capture", "cli", "clock", "daemon", "engine", "knobs", "live",
    "midifile", "model", "pianoroll", "player", "ports", "render", "status", "tokens")]


def test_runtime_modules_import_neither_torch_nor_music21():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES)
            + "bad = [m for m in sys.modules if m.split('.')[0] in "
              "('torch', 'music21', 'glsr_train', 'matplotlib')]\nprint(bad)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
