"""Training DCGAN-family generators with PyTorch: data, networks, the loop, checkpoints, metrics."""
