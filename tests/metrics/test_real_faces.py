"""Real-face swap metrics on hand-made cases with known answers."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from swapper.data.coverage import head_pose
from swapper.faces.alignment import ARCFACE_112, get_template
from swapper.faces.masks import eye_mouth_masks, region_weights
from swapper.metrics import real_faces as rf


def unit(*rows: list[float]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_centroid_and_identity_transfer_on_fixed_vectors() -> None:
    source = unit([1, 0, 0], [1, 0, 0])  # centroid e1
    target = unit([0, 1, 0], [0, 1, 1])
    c = rf.centroid(target)
    expected = torch.nn.functional.normalize(torch.tensor([0, 1 + 1 / math.sqrt(2), 1 / math.sqrt(2)]), dim=0)
    torch.testing.assert_close(c, expected)
    swaps = unit([0, 1, 0], [1, 0.2, 0], [0.3, 1, 0.1], [1, 0, 0])
    figures = rf.identity_transfer(swaps, source, target, "cosine", threshold=0.9)
    cos_t = (swaps @ c).tolist()
    cos_s = swaps[:, 0].tolist()
    assert figures["target_similarity"] == pytest.approx(np.mean(cos_t), abs=1e-6)
    assert figures["source_similarity"] == pytest.approx(np.mean(cos_s), abs=1e-6)
    assert figures["closer_to_target"] == pytest.approx(0.5)  # rows 0 and 2
    assert figures["called_target"] == pytest.approx(np.mean([v >= 0.9 for v in cos_t]))
    assert figures["called_target"] == pytest.approx(0.5)  # rows 0 and 2: cosines 0.924 and 0.917


def test_identity_transfer_by_distance() -> None:
    source = torch.tensor([[0.0, 0.0], [0.0, 0.2]])  # centroid (0, 0.1)
    target = torch.tensor([[1.0, 0.0], [1.0, 0.2]])  # centroid (1, 0.1)
    swaps = torch.tensor([[0.9, 0.1], [0.5, 0.1], [0.2, 0.1]])  # distances to B: 0.1, 0.5, 0.8
    figures = rf.identity_transfer(swaps, source, target, "euclidean", threshold=0.6)
    assert figures["closer_to_target"] == pytest.approx(1 / 3)  # 0.5 is a tie: not closer
    assert figures["called_target"] == pytest.approx(2 / 3)
    assert figures["target_distance"] == pytest.approx((0.1 + 0.5 + 0.8) / 3)
    assert figures["source_distance"] == pytest.approx((0.9 + 0.5 + 0.2) / 3)
    metric = rf.IdentityTransfer("euclidean", 0.6)
    metric.update(swaps[:2], source[:1], target[:1])
    metric.update(swaps[2:], source[1:], target[1:])  # centroids from every update
    assert metric.compute()["called_target"].item() == pytest.approx(2 / 3)


def face68(open_eyes: float = 1.0, open_mouth: float = 0.0, shift: float = 0.0) -> np.ndarray:
    """68 points whose eye and inner-mouth aspect ratios are known: each eye 2 wide and
    0.6·open_eyes tall (EAR 0.3·open_eyes), inner lips 2 wide and open_mouth tall (MAR open_mouth/2)."""
    lm = np.zeros((68, 2))
    lm[:36] = np.stack([np.linspace(0, 10, 36), np.linspace(0, 3, 36)], 1)  # jaw, brows, nose: unused
    for o, cx in ((36, 3.0), (42, 7.0)):
        h = 0.3 * open_eyes
        lm[o : o + 6] = [[cx - 1, 4], [cx - 0.3, 4 - h], [cx + 0.3, 4 - h], [cx + 1, 4], [cx + 0.3, 4 + h],
                         [cx - 0.3, 4 + h]]  # fmt: skip
    lm[48:60] = np.stack([np.linspace(3.5, 6.5, 12), np.full(12, 8.0)], 1)
    h = open_mouth / 2
    lm[60:68] = [
        [4, 8],
        [4.5, 8 - h],
        [5, 8 - h],
        [5.5, 8 - h],
        [6, 8],
        [5.5, 8 + h],
        [5, 8 + h],
        [4.5, 8 + h],
    ]
    return lm + shift


def test_openness_ratios_and_their_correlation() -> None:
    eyes = np.array([1.0, 0.5, 0.1, 0.8])
    mouth = np.array([0.0, 0.4, 1.0, 0.2])
    lm = np.stack([face68(e, m) for e, m in zip(eyes, mouth, strict=True)])
    np.testing.assert_allclose(rf.eye_aspect_ratio(lm), 0.3 * eyes)
    np.testing.assert_allclose(rf.mouth_aspect_ratio(lm), mouth / 2)
    assert rf.pearson(rf.eye_aspect_ratio(lm), rf.eye_aspect_ratio(lm)) == pytest.approx(1.0)
    assert rf.pearson(eyes, -eyes) == pytest.approx(-1.0)
    assert rf.pearson(eyes, 2 * eyes + 3) == pytest.approx(1.0)
    assert math.isnan(rf.pearson(eyes, np.ones(4)))  # a frozen face: no correlation to speak of
    assert rf.pearson([1, 2, np.nan, 3], [2, 4, 5, 6]) == pytest.approx(1.0)  # NaN pairs dropped
    metric = rf.PearsonCorrelation()
    metric.update(torch.tensor(eyes[:2]), torch.tensor(mouth[:2]))
    metric.update(torch.tensor(eyes[2:]), torch.tensor(mouth[2:]))
    assert metric.compute().item() == pytest.approx(np.corrcoef(eyes, mouth)[0, 1])


def test_landmark_error_is_normalised_by_the_inter_ocular_distance() -> None:
    lm = face68()[None]  # eye centres (3, 4) and (7, 4): inter-ocular 4
    assert rf.inter_ocular(lm)[0] == pytest.approx(4.0)
    assert rf.landmark_error(lm, lm)[0] == 0.0
    assert rf.landmark_error(lm + [0.4, 0.0], lm)[0] == pytest.approx(0.1)  # 0.4 px of 4
    five = ARCFACE_112[None]
    assert rf.landmark_error(five * 2 + [3.0, 4.0], five * 2)[0] == pytest.approx(5 / (2 * 35.2372), rel=1e-4)
    nan = np.full((1, 5, 2), np.nan)
    assert math.isnan(rf.landmark_error(nan, five)[0])


def test_sharpness_drops_with_blur() -> None:
    rng = np.random.default_rng(0)
    sharp = (rng.random((2, 48, 48, 3)) * 255).astype(np.uint8)
    blurred = np.stack([cv2.GaussianBlur(x, (0, 0), 2.0) for x in sharp])
    e_sharp, e_blur = rf.laplacian_energy(sharp), rf.laplacian_energy(blurred)
    assert rf.sharpness_ratio(e_sharp, e_sharp) == pytest.approx(1.0)
    assert rf.sharpness_ratio(e_blur, e_sharp) < 0.1
    flat = np.full((1, 16, 16, 3), 128, np.uint8)
    assert rf.laplacian_energy(flat)[0] == 0.0
    # the mask limits the region: a sharp half and a flat half
    half = flat.copy()
    half[0, :, :8] = sharp[0, :16, :8]
    mask = np.zeros((16, 16))
    mask[:, 10:] = 1
    assert rf.laplacian_energy(half, mask)[0] == 0.0
    metric = rf.SharpnessRatio()
    metric.update(torch.tensor(e_blur), torch.tensor(e_sharp))
    assert metric.compute().item() == pytest.approx(rf.sharpness_ratio(e_blur, e_sharp))


def test_region_weights_from_5_points() -> None:
    lm = get_template("mean_face").points5 * 64
    eyes, mouth = eye_mouth_masks(lm, (64, 64))
    iod = float(np.linalg.norm(lm[1] - lm[0]))
    assert eyes.sum() == pytest.approx(2 * math.pi * (0.3 * iod) ** 2, rel=0.03)  # two discs
    w = region_weights(lm, (64, 64), eyes_weight=4.0, mouth_weight=2.0, background_weight=0.0)
    assert w[0, 0] == 0.0 and w.max() == pytest.approx(4.0)
    assert set(np.unique(w[eyes == 1])) == {4.0} and set(np.unique(w[mouth == 1])) == {2.0}


def test_head_pose_of_turned_faces() -> None:
    yaw, pitch = head_pose(ARCFACE_112[None])
    assert abs(yaw[0]) < 0.01 and abs(pitch[0]) < 0.01  # the frontal template
    turned = ARCFACE_112.copy()
    turned[2, 0] += 0.9 * 17.6  # nose moved right by NOSE_DEPTH × half the eye distance: tan(yaw) = 1
    assert head_pose(turned[None])[0][0] == pytest.approx(45.0, abs=0.5)
    rotated = ARCFACE_112 @ np.array([[0.0, 1.0], [-1.0, 0.0]])  # the image turned 90°: same pose
    np.testing.assert_allclose(np.concatenate(head_pose(rotated[None])), [0.0, 0.0], atol=0.01)


def test_resolution_ceiling_is_one_at_full_size_and_falls_with_the_size() -> None:
    rng = np.random.default_rng(3)
    crops = (rng.random((3, 64, 64, 3)) * 255).astype(np.uint8)  # detail at every scale
    assert rf.resolution_ceiling(crops, 64) == 1.0
    ceilings = [rf.resolution_ceiling(crops, n) for n in (8, 16, 32)]
    assert ceilings == sorted(ceilings) and ceilings[-1] < 0.5
    smooth = np.repeat(np.repeat(crops[:, ::4, ::4], 4, 1), 4, 2)  # nothing finer than 4 px blocks...
    flat = cv2.GaussianBlur(smooth[0], (0, 0), 4.0)[None]  # ...then blurred far below 16 px detail
    assert rf.resolution_ceiling(flat, 16) == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ValueError, match="square"):
        rf.resolution_ceiling(crops[:, :, :32], 16)


MIRROR68 = (
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + list(range(27, 31)) + list(range(35, 30, -1))
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + list(range(54, 47, -1)) + list(range(59, 54, -1)) + list(range(64, 59, -1)) + [67, 66, 65]
)  # fmt: skip  # the index of each point's mirror image across the face's vertical axis


def test_expression_features_known_values_and_invariances() -> None:
    lm = face68(open_eyes=1.0, open_mouth=0.6)  # eyes at y 4, d = 4; outer lips y 8, x 3.5..6.5
    lm[17:22] = [3, 2]  # brow centres 2 above their eyes
    lm[22:27] = [7, 2]
    lm[48], lm[54] = [3.5, 7.6], [6.5, 7.6]  # mouth corners 0.4 above the lips' centre (y 8)
    lm[51], lm[57] = [5, 8], [5, 8]
    lm[62], lm[66] = [5, 8 - 0.3], [5, 8 + 0.3]
    lm[8], lm[33] = [5, 11], [5, 6]  # chin 5 below the nose tip
    features = rf.expression_features(lm[None])[0]
    assert rf.EXPRESSION_FEATURES == ("eyes", "mouth", "mouth_width", "smile", "brows", "jaw")
    np.testing.assert_allclose(features, [0.3, 0.3, 3 / 4, 0.4 / 4, 2 / 4, 5 / 4], atol=1e-12)
    # rotated, scaled and moved: unchanged
    angle = np.deg2rad(25)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 2.5 * lm @ rotation.T + [40, -7]
    np.testing.assert_allclose(rf.expression_features(moved[None])[0], features, atol=1e-12)
    # mirrored (as the augmentation's flip does): the mirrored face's points are the same measures
    assert sorted(MIRROR68) == list(range(68))
    mirrored = (lm * [-1, 1])[MIRROR68]
    np.testing.assert_allclose(rf.expression_features(mirrored[None])[0], features, atol=1e-12)
    # a wider open mouth raises only its own measure among the eyes and mouth ones
    wider = face68(open_eyes=1.0, open_mouth=1.0)
    assert rf.expression_features(wider[None])[0, 1] > rf.expression_features(face68(1.0, 0.6)[None])[0, 1]
