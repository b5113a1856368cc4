"""The six pose/expression attributes of the synthetic faces: their order and scale.

Every (B, 6) attribute tensor holds them in ``ATTRIBUTE_NAMES`` order: the renderer's
``Attributes.pose_expression`` (``swapper.data.synthetic``), the estimator network
(``swapper.models.face_embedder.AttributeEstimator``) and its training module. A module of its own
because data imports no network and training imports no data module.
"""

from __future__ import annotations

ATTRIBUTE_NAMES: tuple[str, ...] = ("yaw", "pitch", "roll", "mouth_open", "smile", "blink")

# The renderer's full ranges (``Attributes.sample``): yaw ±30°, pitch ±20°, roll ±15°, expressions 0..1.
# The estimator predicts the attributes divided by these, so all six outputs are of order one.
ATTRIBUTE_SCALE: tuple[float, ...] = (30.0, 20.0, 15.0, 1.0, 1.0, 1.0)

__all__ = ["ATTRIBUTE_NAMES", "ATTRIBUTE_SCALE"]
