"""Lightning callbacks: previews, RNG state in checkpoints."""
