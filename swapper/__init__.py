"""swapper: a configuration-driven training framework for face-swapping models."""

__version__ = "0.1.0"
