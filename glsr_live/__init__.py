"""glsr-live: the realtime runtime of the GLSR-VAE instrument (numpy, onnxruntime, mido)."""

__version__ = "0.1.0"
