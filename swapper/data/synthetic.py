"""Procedurally rendered faces: the embedded default training data, with exact ground-truth swaps.

A face is an :class:`Identity` (who: head shape, skin, eyes, brows, nose, mouth, ears, hair) drawn
with :class:`Attributes` (everything else: pose, expression, lighting, background, framing). The two
are independent, so ``render(identity_b, attributes_of_a)`` is the exact swap of a face of A into B.

Geometry is pseudo-3D: features are points on a deformed ellipsoid (the head), rotated by
yaw/pitch/roll and projected orthographically, so pose moves the features and the outline together.
Drawing is OpenCV anti-aliased polygons at ``supersample`` times the output size, then an
INTER_AREA downscale. Crop units: 1.0 = crop width, head centre at (0.5, 0.515) of the crop; the
eyes sit about 40 % down and the mouth about 75 % down, like an aligned face crop.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from swapper.attributes import ATTRIBUTE_NAMES

__all__ = [
    "BEARD_FULL",
    "BEARD_NONE",
    "BEARD_STUBBLE",
    "HAIR_BALD",
    "HAIR_FRINGE",
    "HAIR_LONG",
    "HAIR_SHORT",
    "Attributes",
    "FaceRenderer",
    "Identity",
]

RGB = tuple[float, float, float]

_CENTRE = (0.5, 0.515)  # head centre in the crop (fractions of width / height)
_SHIFT = 4  # fractional bits of the fixed-point coordinates handed to cv2 (1/16 px precision)
_FIX = float(1 << _SHIFT)
_AA = cv2.LINE_AA

# Palettes that samples are drawn around (RGB in [0, 1]).
_SKIN = np.array(
    [[0.98, 0.86, 0.76], [0.93, 0.76, 0.63], [0.83, 0.62, 0.46], [0.62, 0.43, 0.30], [0.40, 0.27, 0.19]]
)
_HAIR = np.array(
    [
        [0.07, 0.06, 0.05],  # black
        [0.22, 0.14, 0.08],  # dark brown
        [0.42, 0.27, 0.14],  # brown
        [0.80, 0.64, 0.36],  # blond
        [0.62, 0.26, 0.10],  # red
        [0.62, 0.61, 0.60],  # grey
    ]
)
_HAIR_P = np.array([0.3, 0.25, 0.2, 0.12, 0.06, 0.07])
_IRIS = np.array(
    [[0.30, 0.17, 0.08], [0.18, 0.10, 0.05], [0.25, 0.45, 0.70], [0.30, 0.52, 0.30], [0.48, 0.40, 0.18]]
)  # brown, dark brown, blue, green, hazel
_IRIS_P = np.array([0.35, 0.25, 0.2, 0.1, 0.1])

HAIR_SHORT, HAIR_FRINGE, HAIR_LONG, HAIR_BALD = 0.0, 1.0, 2.0, 3.0
BEARD_NONE, BEARD_STUBBLE, BEARD_FULL = 0.0, 1.0, 2.0

# Fixed sample grids, shared by every render.
_LAT, _LON = 15, 40
_theta = np.linspace(0.0, math.pi, _LAT)[1:-1]
_phi = np.linspace(-math.pi, math.pi, _LON, endpoint=False)
_SPHERE = np.concatenate(
    [
        np.stack(
            [
                np.outer(np.sin(_theta), np.sin(_phi)).ravel(),  # X (right)
                np.repeat(-np.cos(_theta), _LON),  # Y (down): top pole is Y = -1
                np.outer(np.sin(_theta), np.cos(_phi)).ravel(),  # Z (towards the camera)
            ],
            axis=1,
        ),
        np.array([[0.0, -1.0, 0.0], [0.0, 1.0, 0.0]]),
    ]
)  # (522, 3) points on the unit sphere
_CUT_COS, _CUT_SIN = np.cos(_phi), np.sin(_phi)  # longitudes of the hairline curve
_ARC = np.linspace(0.0, math.pi, 9)  # half-ellipse parameter for lids
_ARC_COS, _ARC_SIN = np.cos(_ARC), np.sin(_ARC)
_RING = np.linspace(0.0, 2.0 * math.pi, 12, endpoint=False)
_RING_COS, _RING_SIN = np.cos(_RING), np.sin(_RING)
_SPAN = np.linspace(0.0, 1.0, 9)  # left → right along brows and lips
_BOW = np.sin(math.pi * _SPAN)  # 0 at the ends, 1 in the middle


def _pick(rng: np.random.Generator, palette: np.ndarray, weights: np.ndarray, jitter: float) -> RGB:
    """A palette colour, scaled in brightness and jittered per channel."""
    c = palette[rng.choice(len(palette), p=weights)] * rng.uniform(0.85, 1.15) + rng.normal(0.0, jitter, 3)
    return _rgb(c)


def _rgb(c: np.ndarray) -> RGB:
    c = np.clip(c, 0.0, 1.0)
    return (float(c[0]), float(c[1]), float(c[2]))


@dataclass(frozen=True)
class Identity:
    """Who the person is. Lengths are in crop units (1.0 = crop width), colours RGB in [0, 1]."""

    face_width: float = 0.34  # half-width of the head ellipsoid
    face_height: float = 0.44  # half-height (forehead top to chin)
    face_depth: float = 0.32  # half-depth; larger turns features further with yaw
    jaw: float = 0.25  # narrowing towards the chin (0 = oval, 0.5 = pointed)
    skin: RGB = (0.93, 0.76, 0.63)
    eye_spacing: float = 0.155  # half the distance between the eye centres
    eye_level: float = -0.115  # eye height relative to the head centre (negative = up)
    eye_width: float = 0.064  # half-width of an eye
    eye_openness: float = 0.5  # half-height / half-width of an open eye
    iris_size: float = 0.95  # iris radius / open eye half-height
    iris_color: RGB = (0.30, 0.17, 0.08)
    brow_thickness: float = 0.02
    brow_height: float = 0.055  # gap between eye centre and brow
    brow_tilt: float = 0.0  # outer end up (+) or down (-), crop units
    brow_color: RGB = (0.15, 0.10, 0.06)
    nose_length: float = 0.105  # eye level to nose tip
    nose_width: float = 0.040  # half-width of the nostrils
    nose_protrusion: float = 0.05  # how far the tip stands off the face surface
    mouth_width: float = 0.085  # half-width
    mouth_level: float = 0.235  # mouth height relative to the head centre
    lip_color: RGB = (0.75, 0.42, 0.40)
    lip_thickness: float = 0.018
    ear_size: float = 1.0
    hair_style: float = HAIR_SHORT  # 0 short, 1 fringe, 2 long, 3 bald
    hair_color: RGB = (0.22, 0.14, 0.08)
    hair_volume: float = 1.08  # hair surface / head surface scale
    hairline: float = 0.0  # raises (+) or lowers (-) the hairline, in head half-heights
    beard: float = BEARD_NONE  # 0 none, 1 stubble, 2 full beard with moustache
    glasses: float = 0.0  # 0 none, 1 round-ish frames
    glasses_color: RGB = (0.1, 0.1, 0.1)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        """A random identity; every feature varies independently within plausible bounds."""
        u = rng.uniform
        skin_t = u(0.0, 1.0) * (len(_SKIN) - 1)
        lo = int(skin_t)
        hi = min(lo + 1, len(_SKIN) - 1)
        skin = _SKIN[lo] + (skin_t - lo) * (_SKIN[hi] - _SKIN[lo]) + rng.normal(0.0, 0.025, 3)
        hair_style = float(
            rng.choice([HAIR_SHORT, HAIR_FRINGE, HAIR_LONG, HAIR_BALD], p=[0.35, 0.25, 0.3, 0.1])
        )
        hair = np.array(_pick(rng, _HAIR, _HAIR_P, 0.03))
        brow = (
            hair * 0.6
            if hair_style != HAIR_BALD
            else np.array(_pick(rng, _HAIR[:3], _HAIR_P[:3] / 0.75, 0.02))
        )
        lip = skin * np.array([0.88, 0.55, 0.55]) + np.array([0.08, 0.0, 0.02]) + rng.normal(0.0, 0.04, 3)
        return cls(
            face_width=u(0.31, 0.37),
            face_height=u(0.41, 0.46),
            face_depth=u(0.28, 0.36),
            jaw=u(0.05, 0.45),
            skin=_rgb(skin),
            eye_spacing=u(0.14, 0.17),
            eye_level=u(-0.125, -0.105),
            eye_width=u(0.056, 0.072),
            eye_openness=u(0.4, 0.6),
            iris_size=u(0.85, 1.1),
            iris_color=_pick(rng, _IRIS, _IRIS_P, 0.04),
            brow_thickness=u(0.012, 0.028),
            brow_height=u(0.047, 0.065),
            brow_tilt=u(-0.012, 0.012),
            brow_color=_rgb(brow),
            nose_length=u(0.09, 0.125),
            nose_width=u(0.03, 0.05),
            nose_protrusion=u(0.03, 0.07),
            mouth_width=u(0.065, 0.105),
            mouth_level=u(0.22, 0.25),
            lip_color=_rgb(lip),
            lip_thickness=u(0.010, 0.026),
            ear_size=u(0.85, 1.15),
            hair_style=hair_style,
            hair_color=_rgb(hair),
            hair_volume=u(1.04, 1.14),
            hairline=u(-0.08, 0.12),
            beard=float(rng.choice([BEARD_NONE, BEARD_STUBBLE, BEARD_FULL], p=[0.7, 0.15, 0.15])),
            glasses=float(u() < 0.2),
            glasses_color=_rgb(rng.uniform(0.0, 0.35, 3) if u() < 0.7 else rng.uniform(0.2, 0.8, 3)),
        )

    @classmethod
    def from_seed(cls, seed: int) -> Identity:
        """The identity with this seed; the same seed gives the same person everywhere."""
        return cls.sample(np.random.default_rng(seed))


def check_spread(spread: float) -> None:
    """``Attributes.sample``'s ``spread`` must be in (0, 1]."""
    if not 0.0 < spread <= 1.0:
        raise ValueError(f"spread must be in (0, 1], got {spread}")


@dataclass(frozen=True)
class Attributes:
    """Everything that is not identity: pose (degrees), expression (0..1), light, background, framing.

    Pose signs, as seen in the image: +yaw turns the nose to the right, +pitch tilts the face up,
    +roll turns the face clockwise.
    """

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    mouth_open: float = 0.0
    smile: float = 0.0
    blink: float = 0.0
    light_azimuth: float = 0.0  # direction the light comes from, degrees (0 = from the right, 90 = below)
    light_strength: float = 0.2  # 0 = flat; relative brightening of the lit face edge (darkening opposite)
    background: RGB = (0.55, 0.58, 0.62)
    background2: RGB = (0.35, 0.38, 0.42)  # second gradient colour
    background_angle: float = 90.0  # gradient direction, degrees
    scale: float = 1.0
    offset_x: float = 0.0  # fractions of the crop
    offset_y: float = 0.0

    @classmethod
    def sample(cls, rng: np.random.Generator, spread: float = 1.0) -> Attributes:
        """Random attributes; ``spread`` in (0, 1] narrows every range around the frontal, neutral,
        evenly lit, centred face on a mid-grey background (1 = the full ranges)."""
        check_spread(spread)
        u = rng.uniform
        k = spread
        grey = 0.5 + k * rng.uniform(-0.35, 0.35)
        bg = grey + k * rng.uniform(0.0, 0.6) * (rng.uniform(0.0, 1.0, 3) - grey)  # muted colour
        bg2 = np.clip(bg + k * rng.normal(0.0, 0.15, 3), 0.0, 1.0)
        return cls(
            yaw=k * u(-30.0, 30.0),
            pitch=k * u(-20.0, 20.0),
            roll=k * u(-15.0, 15.0),
            mouth_open=u() ** 2,  # mostly closed or ajar, sometimes wide open
            smile=u(),
            blink=u() ** 3,  # eyes mostly open
            light_azimuth=u(0.0, 360.0),
            light_strength=k * u(0.0, 0.4),
            background=_rgb(bg),
            background2=_rgb(bg2),
            background_angle=u(0.0, 360.0),
            scale=1.0 + k * u(-0.05, 0.05),
            offset_x=k * u(-0.05, 0.05),
            offset_y=k * u(-0.05, 0.05),
        )

    def pose_expression(self) -> np.ndarray:
        """(6,) float32 ``[yaw, pitch, roll, mouth_open, smile, blink]``, in ``ATTRIBUTE_NAMES`` order."""
        return np.array([getattr(self, name) for name in ATTRIBUTE_NAMES], dtype=np.float32)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) head → camera rotation; axes x right, y down, z towards the camera."""
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    r_yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return r_roll @ r_pitch @ r_yaw


class _Head:
    """The deformed ellipsoid of one identity: maps face-plane (x, y) to surface points."""

    def __init__(self, idt: Identity) -> None:
        self.a, self.b, self.c, self.jaw = idt.face_width, idt.face_height, idt.face_depth, idt.jaw

    def width(self, y_unit: np.ndarray) -> np.ndarray:
        """Half-width factor at unit height: narrows towards the chin, slightly at the crown."""
        below = np.maximum(y_unit, 0.0)
        above = np.minimum(y_unit, 0.0)
        return 1.0 - self.jaw * below * below - 0.06 * above * above

    def deform(self, unit: np.ndarray) -> np.ndarray:
        """(N, 3) points on the unit sphere → (N, 3) head points."""
        out = unit * (self.a, self.b, self.c)
        out[:, 0] *= self.width(unit[:, 1])
        return out

    def surface(self, x: np.ndarray, y: np.ndarray, lift: np.ndarray | float = 0.0) -> np.ndarray:
        """(N, 3) front-surface points above face-plane coordinates, raised by ``lift`` along z."""
        yu = y / self.b
        xu = x / (self.a * self.width(yu))
        out = np.empty((len(x), 3))
        out[:, 0], out[:, 1] = x, y
        out[:, 2] = self.c * np.sqrt(np.maximum(1.0 - xu * xu - yu * yu, 0.0)) + lift
        return out

    def normal(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) outward normals of the (undeformed) ellipsoid through ``points``."""
        return points / (self.a * self.a, self.b * self.b, self.c * self.c)

    @staticmethod
    def plane_cut(h0: float, m: float) -> np.ndarray:
        """(L, 3) unit-sphere points where the plane Y = h0 - m Z cuts the sphere."""
        cos, sin = _CUT_COS, _CUT_SIN
        qa = 1.0 + m * m * cos * cos
        qb = h0 * m * cos
        r = (qb + np.sqrt(np.maximum(qb * qb - qa * (h0 * h0 - 1.0), 0.0))) / qa
        z = r * cos
        return np.stack([r * sin, h0 - m * z, z], axis=1)


def _hair_plane(idt: Identity) -> tuple[float, float]:
    """Hairline plane ``Y = h0 - m Z`` in unit head coordinates (front is higher than the back)."""
    if idt.hair_style == HAIR_FRINGE:
        h0, m = -0.28, 0.16  # front edge hangs low over the forehead
    else:
        h0, m = -0.38, 0.30
    return h0 - idt.hairline, m


Color = tuple[float, float, float, float]


def _col(c: RGB | np.ndarray, k: float = 1.0) -> Color:
    """RGB in [0, 1] times ``k`` → an opaque OpenCV RGBA colour in [0, 255]."""
    return (min(c[0] * k, 1.0) * 255.0, min(c[1] * k, 1.0) * 255.0, min(c[2] * k, 1.0) * 255.0, 255.0)


_WHITE: Color = (245.0, 242.0, 238.0, 255.0)
_TEETH: Color = (235.0, 232.0, 222.0, 255.0)
_DARK: Color = (25.0, 18.0, 15.0, 255.0)
_PUPIL: Color = (12.0, 10.0, 10.0, 255.0)
_MOUTH: Color = (45.0, 15.0, 18.0, 255.0)


class _Points:
    """Named (N, 3) point sets concatenated so that one projection serves them all."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.index: dict[str, slice] = {}
        self.count = 0

    def add(self, name: str, points: np.ndarray) -> None:
        self.index[name] = slice(self.count, self.count + len(points))
        self.count += len(points)
        self.parts.append(points)

    def array(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros((0, 3))


@dataclass(frozen=True)
class _Layout:
    """Everything about a face that attributes cannot change, cached per identity."""

    head: _Head
    shells: tuple[tuple[slice, Color], ...]  # convex pieces of ears, hair, skin, beard, in draw order
    neck: np.ndarray  # (24, 3) cylinder points, turned by roll only
    neck_at: int  # drawn just before this shell: in front of ears and long hair, behind the head
    points: np.ndarray  # (N, 3) head-frame points of the shells and static features
    index: dict[str, slice]  # name → rows of ``points``
    normals: np.ndarray  # (5, 3) at: left eye, right eye, nose base, mouth, right temple


@functools.lru_cache(maxsize=512)  # ~20 kB each
def _layout(idt: Identity) -> _Layout:
    head = _Head(idt)
    pts = _Points()
    shells: list[tuple[slice, Color]] = []

    def shell(name: str, points: np.ndarray, colour: Color) -> None:
        pts.add(name, points)
        shells.append((pts.index[name], colour))

    skin, hair, style, vol = idt.skin, idt.hair_color, idt.hair_style, idt.hair_volume
    es = idt.ear_size
    for name, side in (("ear_l", -1.0), ("ear_r", 1.0)):  # behind the head's middle; the head hides most
        x = side * (0.93 * head.a + 0.035 * es * (1.0 + _RING_COS))
        ear = np.stack([x, 0.01 + 0.065 * es * _RING_SIN, -0.15 * head.c + 0.02 * _RING_COS], 1)
        shell(name, ear, _col(skin, 0.88))
    if style == HAIR_LONG:  # hair hanging behind the head down past the chin
        back = _SPHERE[_SPHERE[:, 2] < 0.15]
        stretch = np.where(back[:, 1] > 0.0, 1.55, vol)
        long = back * (head.a * vol * 1.06, head.b, head.c)
        long[:, 1] *= stretch
        shell("long_hair", long, _col(hair, 0.92))
    # Painter's order with convex pieces only: each is the projection of (head or hair volume) ∩
    # half-spaces, so its convex hull is exact even though hair and beard outlines are not convex.
    if style == HAIR_BALD:
        below_hair = np.ones(len(_SPHERE), bool)
        cut = np.zeros((0, 3))
    else:
        h0, m = _hair_plane(idt)
        below_hair = _SPHERE[:, 1] + m * _SPHERE[:, 2] >= h0
        cut = head.plane_cut(h0, m)
        shell("hair", np.concatenate([head.deform(_SPHERE[~below_hair]) * vol, head.deform(cut)]), _col(hair))
    shell("skin", head.deform(np.concatenate([_SPHERE[below_hair], cut])), _col(skin))
    if idt.beard != BEARD_NONE:
        # Colour the head below the sideburns, then repaint the skin between the hairline and the beard
        # line, a plane from the sideburns (high) down to the upper lip at the front.
        side_y = (idt.eye_level + 0.035) / head.b
        front_y = (idt.mouth_level - idt.lip_thickness - 0.015) / head.b
        bh, bm = side_y, (side_y - front_y) / 0.9  # Y = bh - bm Z; the upper lip sits near Z = 0.9
        mix = 0.35 if idt.beard == BEARD_STUBBLE else 0.85
        beard = np.array(skin) + mix * (0.8 * np.array(hair) - np.array(skin))
        lower = np.concatenate([_SPHERE[_SPHERE[:, 1] > side_y], head.plane_cut(side_y, 0.0)])
        shell("beard", head.deform(lower) * 1.005, _col(beard))
        above_beard = _SPHERE[:, 1] + bm * _SPHERE[:, 2] < bh
        beard_cut = head.plane_cut(bh, bm)
        if style != HAIR_BALD:
            beard_cut = beard_cut[beard_cut[:, 1] + m * beard_cut[:, 2] >= h0]
            cut = cut[cut[:, 1] + bm * cut[:, 2] < bh]
        shell(
            "upper_skin",
            head.deform(np.concatenate([_SPHERE[below_hair & above_beard], cut, beard_cut])),
            _col(skin),
        )

    # Static features as face-plane (x, y, lift) → surface points.
    fx: list[np.ndarray] = []
    fy: list[np.ndarray] = []
    fl: list[np.ndarray] = []
    names: list[tuple[str, int]] = []

    def feature(name: str, x: np.ndarray, y: np.ndarray, lift: float | np.ndarray) -> None:
        fx.append(x)
        fy.append(y)
        fl.append(np.broadcast_to(lift, x.shape))
        names.append((name, len(x)))

    w, h, ey = idt.eye_width, idt.eye_width * idt.eye_openness, idt.eye_level
    r_iris, iris_y = h * idt.iris_size, ey + 0.1 * h
    for k, side in ((0, -1.0), (1, 1.0)):
        ex = side * idt.eye_spacing
        xs = ex + side * w * _ARC_COS
        feature(f"lower_lid{k}", xs, _LOWER_LID * h + ey, 0.004)
        feature(f"iris{k}", ex + r_iris * _RING_COS, iris_y + r_iris * _RING_SIN, 0.006)  # bulges ahead
        feature(f"pupil{k}", ex + 0.45 * r_iris * _RING_COS, iris_y + 0.45 * r_iris * _RING_SIN, 0.006)
        feature(f"upper_cover{k}", xs + side * 0.004 * _ARC_COS, ey - 1.5 * h * _ARC_SIN - 0.006, 0.004)
        feature(f"lower_cover{k}", xs, ey + 1.4 * h * _ARC_SIN + 0.004, 0.004)
        # Brow: a tapered, slightly arched band, from the inner end outwards.
        bx = side * (idt.eye_spacing - 0.7 * w + 1.75 * w * _SPAN)
        by = ey - idt.brow_height - 0.008 * _BOW - idt.brow_tilt * _SPAN
        half = 0.5 * idt.brow_thickness * (1.0 - 0.45 * _SPAN)
        feature(
            f"brow{k}", np.concatenate([bx, bx[::-1]]), np.concatenate([by - half, (by + half)[::-1]]), 0.006
        )
        if idt.glasses:
            gx, gy = ex + 1.45 * w * _RING_COS, ey + 0.004 + 1.05 * w * _RING_SIN
            feature(f"frame{k}", gx, gy, 0.03)
            feature(f"arm{k}", np.array([ex + side * 1.45 * w]), np.array([ey]), 0.03)
    tip_y = ey + idt.nose_length
    nw, pr = idt.nose_width, idt.nose_protrusion
    s = _RIDGE
    for k, shade in ((0, -1.0), (1, 1.0)):  # a ridge line for either side; the light picks one
        feature(
            f"ridge{k}",
            shade * (0.012 + (nw * 0.85 - 0.012) * s**2),
            ey + 0.015 + (idt.nose_length - 0.012) * s,
            pr * s**3 * 0.6,
        )
    feature("ala", nw * _ALA_X, tip_y + _ALA_Y, pr * _ALA_LIFT)
    for k, sgn in ((0, -1.0), (1, 1.0)):
        feature(
            f"nostril{k}", sgn * nw * 0.5 + 0.013 * _RING_COS, tip_y + 0.009 + 0.006 * _RING_SIN, pr * 0.55
        )
    if idt.glasses:
        inner = idt.eye_spacing - 1.45 * w
        feature("bridge", np.array([-inner, 0.0, inner]), np.full(3, ey - 0.005), 0.03)
    surface = head.surface(np.concatenate(fx), np.concatenate(fy), np.concatenate(fl))
    start = 0
    for name, n in names:
        pts.add(name, surface[start : start + n])
        start += n
    if idt.glasses:  # arms end above the ears, off the surface
        pts.add(
            "temples", np.array([[-head.a, ey + 0.01, -0.1 * head.c], [head.a, ey + 0.01, -0.1 * head.c]])
        )

    ring = np.stack([0.5 * head.a * _RING_COS, np.zeros(12), 0.45 * head.c * _RING_SIN], 1)
    neck = np.concatenate([ring + (0.0, 0.45 * head.b, 0.0), ring + (0.0, 1.6 * head.b, 0.0)])
    anchors = head.surface(
        np.array([-idt.eye_spacing, idt.eye_spacing, 0.0, 0.0]), np.array([ey, ey, tip_y, idt.mouth_level])
    )
    normals = head.normal(np.concatenate([anchors, [[head.a, ey, 0.0]]]))
    points = pts.array()
    for arr in (points, neck, normals):
        arr.flags.writeable = False  # shared by every render of this identity
    neck_at = 3 if style == HAIR_LONG else 2
    return _Layout(head, tuple(shells), neck, neck_at, points, pts.index, normals)


def _landmark_points(idt: Identity, attrs: Attributes, head: _Head) -> np.ndarray:
    """(5, 3) head points: eye centres (image left, right), nose tip, mouth corners."""
    lift = np.array([0.0, 0.0, idt.nose_protrusion, 0.0, 0.0])
    corner_x, corner_y = _mouth_corner(idt, attrs)
    x = np.array([-idt.eye_spacing, idt.eye_spacing, 0.0, -corner_x, corner_x])
    y = np.array([idt.eye_level, idt.eye_level, idt.eye_level + idt.nose_length, corner_y, corner_y])
    return head.surface(x, y, lift)


def _mouth_corner(idt: Identity, attrs: Attributes) -> tuple[float, float]:
    """Face-plane (x, y) of the right mouth corner: a smile widens the mouth and lifts the corners."""
    return idt.mouth_width * (1.0 + 0.12 * attrs.smile), idt.mouth_level - 0.022 * attrs.smile


def _dynamic_points(idt: Identity, att: Attributes, head: _Head) -> np.ndarray:
    """(63, 3) points that expressions move: upper lids (2 × 9), then mouth rows (5 × 9)."""
    h, ey = idt.eye_width * idt.eye_openness, idt.eye_level
    lid = (-_ARC_SIN + att.blink * (_LOWER_LID + _ARC_SIN)) * h + ey  # blink lowers it onto the lower lid
    half, corner_y = _mouth_corner(idt, att)
    mid = corner_y + (idt.mouth_level - corner_y) * _SMILE_CURVE  # a smile curves the line up
    gap = 0.05 * att.mouth_open * _BOW
    t = idt.lip_thickness
    upper_in = mid - 0.3 * gap  # the jaw drops: most of the opening is below the line
    rows = [
        upper_in - t * _UPPER_LIP,  # upper lip outline, with a cupid's bow
        upper_in,
        mid + 0.7 * gap,  # lower lip, inner edge
        mid + 0.7 * gap + 1.1 * t * _LIP_SHAPE,  # lower lip outline
        upper_in + 0.4 * gap,  # lower edge of the upper teeth
    ]
    ex = idt.eye_spacing + idt.eye_width * _ARC_COS
    x = np.concatenate([ex - 2 * idt.eye_spacing, ex, np.tile(half * (2.0 * _SPAN - 1.0), 5)])
    lift = np.full(len(x), 0.004)
    return head.surface(x, np.concatenate([lid, lid, *rows]), lift)


_LOWER_LID = 0.7 * _ARC_SIN  # lower lid, in open-eye half-heights below the eye centre
_LIP_SHAPE = np.sqrt(_BOW)  # lips thin out towards the corners
_UPPER_LIP = 0.8 * _LIP_SHAPE - 0.004 / 0.018 * np.exp(-(((_SPAN - 0.5) / 0.08) ** 2))
_SMILE_CURVE = 1.0 - (1.0 - _BOW) ** 1.5
_RIDGE = np.linspace(0.0, 1.0, 6)
_ALA_X = np.array([-1.0, -0.75, -0.35, 0.0, 0.35, 0.75, 1.0])
_ALA_Y = np.array([-0.006, 0.006, 0.012, 0.008, 0.012, 0.006, -0.006])
_ALA_LIFT = np.array([0.3, 0.45, 0.8, 1.0, 0.8, 0.45, 0.3])


def _project(points: np.ndarray, rot: np.ndarray, attrs: Attributes, size: int) -> np.ndarray:
    """(N, 3) head points → (N, 2) pixel coordinates at ``size`` (pixel centres at integers)."""
    xy = points @ rot[:2].T  # (N, 2) orthographic
    centre = (_CENTRE[0] + attrs.offset_x, _CENTRE[1] + attrs.offset_y)
    return (xy * attrs.scale + centre) * size - 0.5


def _fixed(points: np.ndarray, rot: np.ndarray, attrs: Attributes, size: int) -> np.ndarray:
    """(N, 3) head points → (N, 2) int32 fixed-point pixel coordinates for cv2's ``shift``."""
    return np.rint(_project(points, rot, attrs, size) * _FIX).astype(np.int32)


class _Draw:
    """Feature drawing on a supersampled canvas from the projected fixed-point points of one render."""

    def __init__(self, img: np.ndarray, p: np.ndarray, index: dict[str, slice], dyn: int, line: int) -> None:
        self.img, self.p, self.ix, self.dyn, self.line = img, p, index, dyn, line

    def __getitem__(self, name: str) -> np.ndarray:
        return self.p[self.ix[name]]

    def fill(self, polygons: list[np.ndarray], colour: Color) -> None:
        cv2.fillPoly(self.img, polygons, colour, _AA, _SHIFT)

    def lines(self, polylines: list[np.ndarray], colour: Color, closed: bool = False) -> None:
        cv2.polylines(self.img, polylines, closed, colour, self.line, _AA, _SHIFT)

    def eye(self, idt: Identity, k: int) -> None:
        """White, iris, pupil, skin covers that clip the iris to the lids, lash line, brow."""
        upper = self.p[self.dyn + 9 * k : self.dyn + 9 * k + 9]  # moved by blink
        lower = self[f"lower_lid{k}"]
        self.fill([np.concatenate([upper, lower[::-1]])], _WHITE)
        self.fill([self[f"iris{k}"]], _col(idt.iris_color))
        self.fill([self[f"pupil{k}"]], _PUPIL)
        covers = [
            np.concatenate([upper, self[f"upper_cover{k}"][::-1]]),
            np.concatenate([lower, self[f"lower_cover{k}"][::-1]]),
        ]
        self.fill(covers, _col(idt.skin))
        self.lines([upper], _DARK)
        self.fill([self[f"brow{k}"]], _col(idt.brow_color))

    def nose(self, idt: Identity, shadow_side: int) -> None:
        self.lines([self[f"ridge{shadow_side}"], self["ala"]], _col(idt.skin, 0.72))
        self.fill([self["nostril0"], self["nostril1"]], _col(idt.skin, 0.45))

    def mouth(self, idt: Identity, opened: bool) -> None:
        m = self.dyn + 18
        uo, ui, li, lo, te = (self.p[m + 9 * i : m + 9 * i + 9] for i in range(5))
        self.fill([np.concatenate([uo, lo[::-1]])], _col(idt.lip_color))
        if opened:
            self.fill([np.concatenate([ui, li[::-1]])], _MOUTH)
            self.fill([np.concatenate([ui, te[::-1]])], _TEETH)
        self.lines([ui], _col(idt.lip_color, 0.55))

    def glasses(self, idt: Identity, facing: np.ndarray, arm: int | None) -> None:
        colour = _col(idt.glasses_color)
        self.lines([self[f"frame{k}"] for k in (0, 1) if facing[k]], colour, closed=True)
        bars = [self["bridge"]] if facing[0] and facing[1] else []
        if arm is not None:
            bars.append(np.stack([self[f"arm{arm}"][0], self["temples"][arm]]))
        self.lines(bars, colour)


class FaceRenderer:
    """Draws an :class:`Identity` with :class:`Attributes` as an aligned ``size``×``size`` face crop."""

    def __init__(self, size: int = 64, supersample: int = 2) -> None:
        if int(size) != size or size < 16:
            raise ValueError(f"size must be an integer >= 16, got {size!r}")
        if int(supersample) != supersample or supersample < 1:
            raise ValueError(f"supersample must be an integer >= 1, got {supersample!r}")
        self.size = int(size)
        self.supersample = int(supersample)
        self.canvas_size = self.size * self.supersample
        # Crop-unit coordinates of the output pixel centres, for the lighting ramp.
        coords = (np.arange(self.size, dtype=np.float32) + 0.5) / self.size
        self._gx = coords[None, :, None]  # (1, S, 1)
        self._gy = coords[:, None, None]  # (S, 1, 1)
        self._line = max(1, round(self.canvas_size / 64))  # line thickness: ~1 output px at 64

    def landmarks(self, identity: Identity, attributes: Attributes) -> np.ndarray:
        """(5, 2) float32 pixel coords (OpenCV convention, pixel centres at integers), consistent with
        :meth:`render`: left eye, right eye, nose tip, left mouth corner, right mouth corner, where
        left/right are as seen in the image (the ArcFace / YuNet order)."""
        rot = _rotation(attributes.yaw, attributes.pitch, attributes.roll)
        pts = _landmark_points(identity, attributes, _Head(identity))
        return _project(pts, rot, attributes, self.size).astype(np.float32)

    def render(self, identity: Identity, attributes: Attributes) -> np.ndarray:
        """(size, size, 3) float32 RGB in [0, 1]."""
        idt, att = identity, attributes
        lay = _layout(idt)
        rot = _rotation(att.yaw, att.pitch, att.roll)
        S = self.canvas_size
        img = self._background(att)  # (S, S, 4) uint8; alpha marks the head for the lighting
        # One projection for everything that turns with the head; the neck turns with roll only.
        p = _fixed(np.concatenate([lay.points, _dynamic_points(idt, att, lay.head)]), rot, att, S)
        neck = cv2.convexHull(_fixed(lay.neck, _rotation(0.0, 0.0, att.roll), att, S))
        for k, (rows, colour) in enumerate(lay.shells):
            if k == lay.neck_at:
                cv2.fillConvexPoly(img, neck, _col(idt.skin, 0.72), _AA, _SHIFT)
            cv2.fillConvexPoly(img, cv2.convexHull(p[rows]), colour, _AA, _SHIFT)
        # Features are skipped once they have turned away from the camera (self-occlusion).
        facing = lay.normals @ rot[2] > 0.0  # left eye, right eye, nose, mouth, right temple
        draw = _Draw(img, p, lay.index, len(lay.points), self._line)
        for k in (0, 1):
            if facing[k]:
                draw.eye(idt, k)
        if facing[2]:
            draw.nose(idt, shadow_side=0 if math.cos(math.radians(att.light_azimuth)) > 0.0 else 1)
        if facing[3]:
            draw.mouth(idt, att.mouth_open > 0.02)
        if idt.glasses:
            # An arm shows on the side of the head that has turned towards the camera.
            arm = (1 if facing[4] else 0) if abs(att.yaw) > 1e-3 else None
            draw.glasses(idt, facing, None if arm is None or not facing[arm] else arm)
        small = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return self._light(small, att)

    def render_grid(self, identities: Sequence[Identity], attributes: Sequence[Attributes]) -> np.ndarray:
        """(rows·size, cols·size, 3) float32 contact sheet: row i is identity i under every attribute set,
        so a column holds the ground-truth swaps of one another."""
        rows = [np.concatenate([self.render(idt, att) for att in attributes], axis=1) for idt in identities]
        return np.concatenate(rows, axis=0)

    def _background(self, att: Attributes) -> np.ndarray:
        """(S, S, 4) uint8 linear gradient, alpha 0: a 2×2 image resized bilinearly."""
        ang = math.radians(att.background_angle)
        t = 0.5 + _BG_X * math.cos(ang) + _BG_Y * math.sin(ang)  # (2, 2, 1), 0 → bg0, 1 → bg1
        bg0, bg1 = np.array(att.background), np.array(att.background2)
        corners = np.zeros((2, 2, 4), np.float32)
        corners[..., :3] = np.clip(bg0 + t * (bg1 - bg0), 0.0, 1.0) * 255.0
        S = self.canvas_size
        return cv2.resize(np.rint(corners).astype(np.uint8), (S, S), interpolation=cv2.INTER_LINEAR)

    def _light(self, small: np.ndarray, att: Attributes) -> np.ndarray:
        """Shade the foreground (alpha) with a directional ramp plus a soft radial fall-off."""
        img = small.astype(np.float32) * np.float32(1.0 / 255.0)
        rgb, alpha = img[..., :3], img[..., 3:]  # (S, S, 3), (S, S, 1)
        ang = math.radians(att.light_azimuth)
        k = att.light_strength / 0.35  # ramp slope per crop unit; 0.35 ≈ face half-width
        dx = self._gx - np.float32(_CENTRE[0] + att.offset_x)
        dy = self._gy - np.float32(_CENTRE[1] + att.offset_y)
        ramp = dx * np.float32(k * math.cos(ang)) + dy * np.float32(k * math.sin(ang))
        shade = ramp - np.float32(0.6) * (dx * dx + dy * dy)  # (S, S, 1) relative change
        out = rgb * (1.0 + alpha * shade)
        return np.clip(out, 0.0, 1.0, out=out)


_BG_X = np.array([[0.0, 1.0], [0.0, 1.0]])[..., None] - 0.5
_BG_Y = np.array([[0.0, 0.0], [1.0, 1.0]])[..., None] - 0.5


@functools.lru_cache(maxsize=8)
def shared_renderer(size: int) -> FaceRenderer:
    """One renderer per image size and process (each DataLoader worker builds its own)."""
    return FaceRenderer(size=size)
