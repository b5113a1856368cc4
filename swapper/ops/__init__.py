"""Experiment operations: reading run directories, comparison tables and plots, W&B run identity."""
