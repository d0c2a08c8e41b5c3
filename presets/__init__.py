"""Shipped models, knob presets and training recipes; installed as ``glsr_live.presets``."""
