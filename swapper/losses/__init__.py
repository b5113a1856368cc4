"""Loss terms: one module per family, each a :class:`~swapper.losses.base.LossTerm`."""
