"""Offline side of glsr-live: dataset, GLSR-VAE training, ONNX export, evaluation (torch)."""
