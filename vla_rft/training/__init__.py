"""Training stages, one readable loop per file, and what they share: typed configs from recipes,
safetensors checkpoints, torchrun data parallelism and run logging."""
