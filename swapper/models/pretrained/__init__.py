"""Frozen pretrained face networks whose state-dict keys match the public checkpoints."""

from swapper.models.pretrained.arcface import ArcFace
from swapper.models.pretrained.base import FrozenNetwork
from swapper.models.pretrained.loading import load_state_dict_file, load_strict
from swapper.models.pretrained.sface import SFace
from swapper.models.pretrained.vggface import VGGFace

__all__ = ["ArcFace", "FrozenNetwork", "SFace", "VGGFace", "load_state_dict_file", "load_strict"]
