"""Drawing one synthetic portrait: pure PIL + numpy, no file I/O.

`draw_portrait(attrs, size, rng)` draws a front-facing head, neck and shoulders on a plain or
gently graded background. Each label shows where it shows on a real face, so that a model has to
look at the right region:

- face shape: the outline of the face (jaw, chin, cheekbones, forehead width);
- hairstyle: the hair (long straight, short sports crop, curly volume, long wavy, bare crown);
- gender: beard or stubble, eyebrow weight and shoulder width (male); coloured lips, eyelashes,
  narrow shoulders and sometimes earrings (female);
- age band: wrinkles and greying that grow monotonically with the band (forehead lines = band
  index, smile lines from the 30s, eye bags and crow's feet from the 50s, jowls at 60+).

Skin tone, hair colour, clothes, background, pose (rotation, shift, scale), lighting and noise vary
at random so that no single pixel or colour gives a label away. Everything is drawn at twice the
requested size on a transparent layer with a margin, posed with one affine transform, composited
on the background and downsampled with LANCZOS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from portrait_core.schema import ATTRIBUTES, age_band

Colour = tuple[int, int, int]

SKIN_TONES: tuple[Colour, ...] = (
    (248, 226, 208),
    (239, 203, 177),
    (226, 182, 150),
    (202, 154, 116),
    (171, 121, 86),
    (136, 93, 64),
    (100, 68, 49),
)
HAIR_COLOURS: dict[str, Colour] = {
    "black": (30, 26, 24),
    "dark_brown": (64, 42, 30),
    "brown": (112, 76, 46),
    "blonde": (214, 180, 116),
    "auburn": (142, 64, 36),
}
GREY_HAIR: Colour = (216, 216, 218)
# Hair greying per age band (20s .. 60+): fill colour blend towards grey, and share of grey strands.
GREY_FRACTION = (0.0, 0.1, 0.3, 0.6, 0.9)
GREY_STRANDS = (0.0, 0.06, 0.3, 0.55, 0.8)
LIP_COLOURS: tuple[Colour, ...] = (
    (196, 36, 58),
    (214, 78, 108),
    (156, 28, 62),
    (226, 98, 88),
    (178, 46, 96),
)
EYE_COLOURS: tuple[Colour, ...] = ((60, 38, 24), (92, 60, 34), (58, 96, 140), (70, 110, 70))
CLOTHES: tuple[Colour, ...] = (
    (40, 60, 110),
    (120, 30, 40),
    (30, 90, 60),
    (200, 200, 205),
    (50, 50, 55),
    (180, 140, 60),
    (90, 60, 120),
    (220, 120, 60),
    (70, 130, 160),
)

# Face geometry per shape: half-width W and half-height H as fractions of the canvas side.
FACE_SIZE: dict[str, tuple[float, float]] = {
    "round": (0.208, 0.220),
    "long": (0.156, 0.286),
    "square": (0.212, 0.236),
    "oval": (0.176, 0.256),
    "inverted_triangle": (0.204, 0.250),
    "diamond": (0.200, 0.262),
}
# Vertical landmarks in face units (t = -1 top of skull, 0 eye line, 1 chin).
T_BROW = -0.15
T_NOSE = 0.30
T_MOUTH = 0.55
T_HAIRLINE = -0.62
T_TEMPLE = -0.30
WAVE_AMPLITUDE = 0.024  # wavy hair: sideways swing of edges and strands, in canvas sides
WAVE_LENGTH = 0.10


T_SKULL = -0.55  # above this the head is a smooth dome whatever the face shape


def face_profile(shape: str, t: np.ndarray | float) -> np.ndarray:
    """Half-width of the head (in units of W) at height t in [-1, 1]; 1 is the widest point.

    Below T_SKULL (forehead, cheeks, jaw, chin) the width follows the face shape; above it the
    skull is an elliptic dome as wide as the forehead, so hair and bare crowns look natural.
    """
    t = np.asarray(t, dtype=np.float64)
    skull = np.clip((T_SKULL - t) / (1.0 + T_SKULL), 0.0, 1.0)
    dome = np.sqrt(np.clip(1.0 - skull**2, 0.0, 1.0))
    return _shape_profile(shape, np.maximum(t, T_SKULL)) * np.where(t < T_SKULL, dome, 1.0)


def _shape_profile(shape: str, t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    if shape == "round":
        return np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0))
    if shape == "long":
        return np.clip(1.0 - a**2.6, 0.0, 1.0) ** (1 / 2.6)
    if shape == "square":
        e = np.where(t < 0, 3.5, 8.0)  # flat sides, wide jaw with sharp corners
        return np.clip(1.0 - a**e, 0.0, 1.0) ** (1 / e)
    if shape == "oval":
        return np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0)) * (1.0 - 0.22 * t) / 1.03
    if shape == "inverted_triangle":
        k = -0.15  # widest at the cheeks, forehead as wide, straight jaw to a pointed chin
        top = np.clip(1.0 - np.clip((k - t) / (1 + k), 0, 1) ** 3.5, 0.0, 1.0) ** (1 / 3.5)
        s = np.clip((t - k) / (1 - k), 0.0, 1.0)
        bottom = (1.0 - s) ** 0.85
        return np.where(t < k, top, bottom)
    if shape == "diamond":
        k = 0.05  # widest at the cheekbones, narrow forehead, narrow chin
        s = np.clip(np.where(t < k, (k - t) / (1 + k), (t - k) / (1 - k)), 0.0, 1.0)
        top = np.clip(1.0 - s**1.2, 0.0, 1.0) ** 0.9
        bottom = np.clip(1.0 - s**1.1, 0.0, 1.0)
        return np.where(t < k, top, bottom)
    raise ValueError(f"unknown face shape {shape!r}")


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _shade(c: Colour, k: float) -> Colour:
    return tuple(int(max(0, min(255, round(x * k)))) for x in c)  # type: ignore[return-value]


def _jitter(c: Colour, rng: np.random.Generator, amount: int) -> Colour:
    return tuple(  # type: ignore[return-value]
        int(max(0, min(255, x + rng.integers(-amount, amount + 1)))) for x in c
    )


def _lum(c: Colour) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _w(f: _Face, px: float) -> int:
    """A line width given in pixels of a 256-pixel drawing (a 128-pixel picture), scaled."""
    return max(1, int(round(px * f.u / 256)))


def _rgba(c: Colour, alpha: int) -> tuple[int, int, int, int]:
    return (c[0], c[1], c[2], int(max(0, min(255, alpha))))


@dataclass
class _Face:
    """Where the face is on the drawing layer, in layer pixels."""

    shape: str
    cx: float
    cy: float
    W: float
    H: float
    u: float  # one canvas side in layer pixels (2 x size)

    def __post_init__(self) -> None:
        # half(t) is called often with scalars: interpolate a table instead of numpy per call
        self._ts = np.linspace(-1.0, 1.0, 801)
        self._ws = self.W * face_profile(self.shape, self._ts)

    def y(self, t: float) -> float:
        return self.cy + self.H * t

    def half(self, t: float) -> float:
        return float(np.interp(t, self._ts, self._ws))

    def outline(self, n: int = 72, grow: float = 0.0, t0: float = -1.0, t1: float = 1.0):
        """Closed outline (right side top->bottom, left side bottom->top) grown by `grow` px."""
        th = np.linspace(math.acos(-t0), math.acos(-t1), n)
        ts = -np.cos(th)
        w = (self.W + grow) * face_profile(self.shape, ts)
        ys = self.cy + (self.H + grow) * ts
        right = list(zip((self.cx + w).tolist(), ys.tolist()))
        left = list(zip((self.cx - w).tolist(), ys.tolist()))
        return right, left


def draw_portrait(attrs: dict, size: int, rng: np.random.Generator) -> Image.Image:
    """Draw one portrait for attrs {gender, age, face_shape, hairstyle} as a size x size RGB image."""
    male = attrs["gender"] == "male"
    band = ATTRIBUTES["age"].index(age_band(attrs["age"]))
    shape = attrs["face_shape"]
    hairstyle = attrs["hairstyle"]
    if shape not in FACE_SIZE:
        raise ValueError(f"unknown face shape {shape!r}")
    if hairstyle not in ATTRIBUTES["hairstyle"].classes:
        raise ValueError(f"unknown hairstyle {hairstyle!r}")

    # One independent stream per part of the picture, so that changing one attribute changes
    # only the pixels that show it: the same rng with another hairstyle gives the same face,
    # background, pose and noise.
    r_scene, r_look, r_face, r_hair, r_sex, r_feat, r_age = (
        np.random.default_rng(s) for s in rng.integers(0, 2**63 - 1, size=7)
    )

    u = 2 * size  # drawing scale: everything is a fraction of u
    margin = int(round(0.2 * u))
    side = u + 2 * margin
    layer = _background(side, r_scene)
    d = ImageDraw.Draw(layer, "RGBA")  # RGB image, RGBA ink: translucent fills blend

    w_frac, h_frac = FACE_SIZE[shape]
    face = _Face(
        shape=shape,
        cx=margin + 0.5 * u,
        cy=margin + 0.43 * u,
        W=w_frac * u * r_face.uniform(0.97, 1.03),
        H=h_frac * u * r_face.uniform(0.97, 1.03),
        u=u,
    )

    skin = _jitter(SKIN_TONES[r_look.integers(len(SKIN_TONES))], r_look, 6)
    base_hair = _jitter(list(HAIR_COLOURS.values())[r_look.integers(len(HAIR_COLOURS))], r_look, 8)
    grey = float(np.clip(GREY_FRACTION[band] + r_look.uniform(-0.04, 0.04), 0.0, 1.0))
    hair = _mix(base_hair, GREY_HAIR, grey)
    line = _shade(skin, 0.62)  # wrinkle and contour colour
    earrings = r_sex.random() < 0.55 and not male

    _draw_clothes(d, face, male, r_look, side)
    _draw_back_hair(d, face, hairstyle, hair, band, r_hair)
    _draw_neck(d, face, skin, male, band)
    _draw_ears(d, face, skin, line, earrings, r_sex)
    right, left = face.outline()
    d.polygon(right + left[::-1], fill=_rgba(skin, 255))
    d.line(right + left[::-1] + [right[0]], fill=_rgba(line, 150), width=_w(face, 2))
    if male:
        _draw_beard(d, face, skin, hair, r_sex)
    _draw_age(d, face, skin, band, r_age)
    _draw_features(d, face, skin, hair, male, band, r_feat)
    _draw_front_hair(d, face, hairstyle, hair, skin, band, r_hair)

    # anti-alias: LANCZOS down to the final scale, then pose there (cheaper than posing at 2x)
    layer = layer.resize((side // 2, side // 2), Image.Resampling.LANCZOS)
    img = _pose(layer, size, margin / 2, (face.cx / 2, face.cy / 2), r_scene)
    return _light_and_noise(img, r_scene)


# --- body --------------------------------------------------------------------------------------


def _draw_clothes(d: ImageDraw.ImageDraw, f: _Face, male: bool, rng, side: int) -> None:
    u = f.u
    colour = _jitter(CLOTHES[rng.integers(len(CLOTHES))], rng, 12)
    half = (0.43 if male else 0.31) * u * rng.uniform(0.97, 1.03)
    top = f.y(1.0) + 0.085 * u
    neck = (0.085 if male else 0.062) * u * 1.3
    right = []
    for k in range(9):  # rounded shoulder, right side
        a = k / 8 * math.pi / 2
        right.append((f.cx + neck + (half - neck) * math.sin(a), top + 0.1 * u * (1 - math.cos(a))))
    left = [(2 * f.cx - x, y) for x, y in right][::-1]
    bottom = [(f.cx + half + 0.03 * u, side), (f.cx - half - 0.03 * u, side)]
    d.polygon(left + right + bottom, fill=_rgba(colour, 255))
    edge = _rgba(_shade(colour, 0.7), 255)
    d.line(right, fill=edge, width=_w(f, 2))
    d.line(left, fill=edge, width=_w(f, 2))


def _draw_neck(d, f: _Face, skin: Colour, male: bool, band: int) -> None:
    u = f.u
    half = (0.078 if male else 0.058) * u
    top = f.y(0.45)
    bottom = f.y(1.0) + 0.10 * u
    neck_skin = _shade(skin, 0.9)
    d.rectangle([f.cx - half, top, f.cx + half, bottom], fill=_rgba(neck_skin, 255))
    d.ellipse(
        [f.cx - half, bottom - 0.035 * u, f.cx + half, bottom + 0.025 * u],
        fill=_rgba(neck_skin, 255),
    )
    # shadow under the chin
    d.ellipse(
        [f.cx - half, f.y(1.0) - 0.01 * u, f.cx + half, f.y(1.0) + 0.035 * u],
        fill=_rgba(_shade(skin, 0.72), 160),
    )
    for k in range(max(0, band - 2)):  # neck lines from the 50s
        y = f.y(1.0) + (0.045 + 0.022 * k) * u
        d.arc(
            [f.cx - half * 0.8, y - 0.012 * u, f.cx + half * 0.8, y + 0.012 * u],
            200,
            340,
            fill=_rgba(_shade(skin, 0.6), 200),
            width=_w(f, 2),
        )


def _draw_ears(d, f: _Face, skin: Colour, line: Colour, earrings: bool, rng) -> None:
    u = f.u
    ew, eh = 0.028 * u, 0.062 * u
    yc = f.y(0.05)
    x_edge = f.half(0.05)
    metal = (212, 175, 55) if rng.random() < 0.6 else (200, 200, 210)
    for sgn in (-1, 1):
        x = f.cx + sgn * (x_edge + ew * 0.35)
        d.ellipse(
            [x - ew, yc - eh, x + ew, yc + eh],
            fill=_rgba(skin, 255),
            outline=_rgba(line, 200),
            width=_w(f, 2),
        )
        if earrings:
            r = 0.014 * u
            ex, ey = x, yc + eh + r * 0.6
            if rng.random() < 0.5:
                d.ellipse([ex - r, ey - r, ex + r, ey + r], fill=_rgba(metal, 255))
            else:
                d.ellipse(
                    [ex - 1.6 * r, ey - 0.6 * r, ex + 1.6 * r, ey + 2.6 * r],
                    outline=_rgba(metal, 255),
                    width=_w(f, 3),
                )


# --- hair --------------------------------------------------------------------------------------


def _strand_colour(hair: Colour, band: int, rng) -> tuple[int, int, int, int]:
    if rng.random() < GREY_STRANDS[band]:
        return _rgba(_jitter((232, 232, 234), rng, 8), 230)
    return _rgba(_shade(hair, 0.62 if _lum(hair) > 60 else 1.9), 210)


def _hairline(f: _Face, t_center: float, t_side: float, n: int = 25):
    """Hairline from the right temple to the left one, arching up to t_center in the middle."""
    xs_half = f.half(t_side)
    yc, ys = f.y(t_center), f.y(t_side)
    pts = []
    for k in range(n):
        r = 1 - 2 * k / (n - 1)  # 1 .. -1
        pts.append((f.cx + r * xs_half, yc + (ys - yc) * abs(r) ** 3))
    return pts


def _cap(f: _Face, grow: float, t_center: float, t_side: float):
    right, left = f.outline(n=40, grow=grow, t0=-1.0, t1=t_side)
    return right[::-1] + left + _hairline(f, t_center, t_side)[::-1]


def _long_hair_edge(f: _Face, grow: float, y_bot: float, flare: float, wave: float, rng):
    """Right edge of long hair, top to bottom (mirror for the left)."""
    t_b = -0.1
    right, _ = f.outline(n=24, grow=grow, t0=-1.0, t1=t_b)
    x0, y0 = right[-1]
    x1 = f.cx + f.W + grow + flare
    phase = rng.uniform(0, 2 * math.pi)
    pts = list(right)
    n = 16
    for k in range(1, n + 1):
        p = k / n
        y = y0 + (y_bot - y0) * p
        x = (
            x0
            + (x1 - x0) * p**0.7
            + wave * math.sin(2 * math.pi * (y - y0) / WAVE_LENGTH / f.u + phase)
        )
        pts.append((x, y))
    return pts


def _draw_back_hair(d, f: _Face, style: str, hair: Colour, band: int, rng) -> None:
    u = f.u
    fill = _rgba(hair, 255)
    if style in ("straight", "wavy"):
        wavy = style == "wavy"
        grow = (0.034 if wavy else 0.022) * u
        y_bot = f.y(1.0) + rng.uniform(0.05, 0.14) * u
        flare = rng.uniform(0.03, 0.06) * u + (0.02 * u if wavy else 0.0)
        wave = WAVE_AMPLITUDE * u if wavy else 0.0
        right = _long_hair_edge(f, grow, y_bot, flare, wave, rng)
        left = [(2 * f.cx - x, y) for x, y in right]
        x_r, x_l = right[-1][0], left[-1][0]
        bottom = []
        m = 14
        for k in range(m + 1):
            x = x_r + (x_l - x_r) * k / m
            dy = (0.018 * u * math.sin(k * math.pi / 2)) if wavy else (0.006 * u * (k % 2))
            bottom.append((x, y_bot + dy))
        d.polygon(right + bottom + left[::-1], fill=fill)
        # strands: straight lines or sine waves, from the top of the head down to the ends
        n_strands = int(rng.integers(16, 22))
        top_y = f.y(-0.55)
        top_half = f.half(-0.55) + grow
        for k in range(n_strands):
            p = (k + 0.5) / n_strands * 2 - 1
            x_top = f.cx + p * top_half * 0.95
            x_bot = f.cx + p * (abs(x_r - f.cx)) * 0.95
            colour = _strand_colour(hair, band, rng)
            pts = []
            phase = rng.uniform(0, 2 * math.pi)
            for j in range(21):
                q = j / 20
                y = top_y + (y_bot - 0.01 * u - top_y) * q
                x = x_top + (x_bot - x_top) * q**0.7
                if wavy:
                    x += (
                        WAVE_AMPLITUDE
                        * u
                        * math.sin(2 * math.pi * (y - top_y) / WAVE_LENGTH / u + phase)
                    )
                pts.append((x, y))
            d.line(pts, fill=colour, width=_w(f, 3 if wavy else 2), joint="curve")
    elif style == "curly":
        r_ring_x = f.W + 0.06 * u
        r_ring_y = f.H + 0.05 * u
        circles = []
        n = int(rng.integers(70, 90))
        for _ in range(n):
            a = rng.uniform(-math.pi * 1.08, math.pi * 0.08)  # around the top, down to the jaw
            rad = rng.uniform(0.72, 1.05)
            x = f.cx + r_ring_x * rad * math.cos(a)
            y = f.cy + r_ring_y * rad * math.sin(a) * (1.0 if math.sin(a) < 0 else 2.2)
            circles.append((x, y, rng.uniform(0.024, 0.038) * u))
        # fill behind the curls so the volume reads as a mass of hair
        d.ellipse(
            [
                f.cx - r_ring_x * 0.95,
                f.cy - r_ring_y * 0.98,
                f.cx + r_ring_x * 0.95,
                f.cy + 0.35 * f.H,
            ],
            fill=fill,
        )
        _curls(d, f, circles, hair, band, rng)
    elif style == "balding":
        # thin fringe at the back of the head, seen at the sides above and behind the ears
        right, left = f.outline(n=20, grow=0.024 * u, t0=-0.55, t1=0.12)
        ir, il = f.outline(n=20, grow=-0.004 * u, t0=-0.55, t1=0.12)
        d.polygon(right + ir[::-1], fill=fill)
        d.polygon(left + il[::-1], fill=fill)


def _curls(d, f: _Face, circles, hair: Colour, band: int, rng) -> None:
    for x, y, r in circles:
        edge = _strand_colour(hair, band, rng)
        d.ellipse([x - r, y - r, x + r, y + r], fill=_rgba(hair, 255), outline=edge, width=_w(f, 2))
        ri = r * 0.45
        d.arc([x - ri, y - ri, x + ri, y + ri], 0, 270, fill=edge, width=_w(f, 2))


def _draw_front_hair(d, f: _Face, style: str, hair: Colour, skin: Colour, band: int, rng) -> None:
    u = f.u
    fill = _rgba(hair, 255)
    if style in ("straight", "wavy"):
        grow = (0.034 if style == "wavy" else 0.022) * u
        t_c = T_HAIRLINE + rng.uniform(-0.04, 0.03)
        cap = _cap(f, grow, t_c, T_TEMPLE)
        d.polygon(cap, fill=fill)
        part = f.cx + rng.uniform(-0.5, 0.5) * f.W
        top = (part, f.y(-1.0) - grow * 0.3)
        line_pts = _hairline(f, t_c, T_TEMPLE, n=17)
        phase = rng.uniform(0, 2 * math.pi)
        for x, y in line_pts:
            colour = _strand_colour(hair, band, rng)
            pts = []
            for j in range(11):
                q = j / 10
                px = top[0] + (x - top[0]) * q
                py = top[1] + (y - top[1]) * q
                if style == "wavy":
                    px += 0.012 * u * math.sin(q * 3 * math.pi + phase)
                pts.append((px, py))
            d.line(pts, fill=colour, width=_w(f, 2), joint="curve")
    elif style == "sports":
        grow = 0.010 * u
        t_c = -0.68 + rng.uniform(-0.03, 0.03)
        cap = _cap(f, grow, t_c, -0.42)
        d.polygon(cap, fill=_rgba(_mix(hair, skin, 0.15), 255))
        # a short crop: a stipple of tiny dashes
        right, left = f.outline(n=30, grow=0, t0=-1.0, t1=-0.45)
        n = int(rng.integers(90, 120))
        for _ in range(n):
            t = rng.uniform(-0.98, t_c + 0.02)
            half = f.half(t) * 0.95
            x = f.cx + rng.uniform(-half, half)
            y = f.y(t)
            ln = 0.008 * u
            d.line(
                [(x, y), (x + rng.uniform(-ln, ln), y + ln)],
                fill=_strand_colour(hair, band, rng),
                width=_w(f, 2),
            )
    elif style == "curly":
        t_c = T_HAIRLINE + rng.uniform(-0.03, 0.03)
        cap = _cap(f, 0.02 * u, t_c, T_TEMPLE)
        d.polygon(cap, fill=fill)
        circles = []
        for x, y in _hairline(f, t_c, T_TEMPLE, n=int(rng.integers(9, 12))):
            circles.append((x, y - 0.012 * u, rng.uniform(0.022, 0.032) * u))
        for _ in range(int(rng.integers(12, 18))):
            t = rng.uniform(-1.02, t_c - 0.05)
            half = f.half(t) * 0.9
            circles.append((f.cx + rng.uniform(-half, half), f.y(t), rng.uniform(0.022, 0.034) * u))
        _curls(d, f, circles, hair, band, rng)
    elif style == "balding":
        # bare crown: a shine on the skin, and a few thin wisps at the temples
        w = f.half(-0.85)
        d.ellipse(
            [f.cx - w * 0.55, f.y(-0.96), f.cx - w * 0.05, f.y(-0.82)],
            fill=_rgba(_mix(skin, (255, 255, 255), 0.45), 170),
        )
        for sgn in (-1, 1):
            for k in range(4):
                t = -0.5 + 0.14 * k
                x = f.cx + sgn * f.half(t)
                d.line(
                    [(x - sgn * 0.006 * u, f.y(t)), (x + sgn * 0.02 * u, f.y(t + 0.08))],
                    fill=_strand_colour(hair, band, rng),
                    width=_w(f, 2),
                )


# --- face ---------------------------------------------------------------------------------------


def _beard_region(f: _Face, t_side: float, t_mid: float, grow: float, n: int = 24):
    """Jaw region below a line that runs from the sideburns (t_side) down to t_mid mid-face."""
    right, left = f.outline(n=n, grow=0.0, t0=t_side, t1=1.0)

    # let the beard stand proud of the jaw, most at the chin
    def bulk(pts):
        out = []
        for x, y in pts:
            k = max(0.0, (y - f.cy) / f.H - t_side) / (1.0 - t_side)
            dx = x - f.cx
            out.append((f.cx + dx * (1 + grow * k / f.W), y + grow * k * k))
        return out

    outer = bulk(right) + bulk(left)[::-1]
    xs = f.half(t_side)
    y_side, y_mid = f.y(t_side), f.y(t_mid)
    top = []
    for k in range(1, n):
        r = 1 - 2 * k / n  # right to left, ends excluded
        top.append((f.cx + r * xs, y_side + (y_mid - y_side) * (1 - r * r) ** 1.5))
    return outer + top[::-1]


def _draw_beard(d, f: _Face, skin: Colour, hair: Colour, rng) -> None:
    """Every man has at least stubble; some a moustache, some a full beard."""
    u = f.u
    kind = rng.choice(["stubble", "beard", "moustache"], p=[0.4, 0.3, 0.3])
    beard = hair if _lum(hair) < _lum(skin) - 45 else _mix(hair, (40, 30, 25), 0.55)
    stubble = _mix(_shade(skin, 0.5), beard, 0.4)
    region = _beard_region(f, 0.08, 0.40, 0.0)
    d.polygon(region, fill=_rgba(stubble, 110))
    if kind == "beard":
        d.polygon(
            _beard_region(f, 0.05, 0.40, 0.03 * u * rng.uniform(0.5, 1.0)), fill=_rgba(beard, 235)
        )
    elif kind == "moustache":
        mw = 0.058 * u
        my = f.y(T_MOUTH) - 0.014 * u
        d.polygon(
            [
                (f.cx - mw, my + 0.016 * u),
                (f.cx - mw * 0.5, my - 0.014 * u),
                (f.cx + mw * 0.5, my - 0.014 * u),
                (f.cx + mw, my + 0.016 * u),
                (f.cx, my + 0.002 * u),
            ],
            fill=_rgba(beard, 240),
        )
    # stipple for texture
    pts = np.array(region)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    dot = _rgba(_shade(stubble, 0.7), 200)
    for _ in range(70):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        t = (y - f.cy) / f.H
        if t > 0.3 and abs(x - f.cx) < f.half(t) * 0.92:
            d.point((x, y), fill=dot)


def _curve(d, p0, p1, p2, colour, width: int, n: int = 12) -> None:
    """Quadratic Bezier through control point p1."""
    pts = []
    for k in range(n + 1):
        s = k / n
        x = (1 - s) ** 2 * p0[0] + 2 * (1 - s) * s * p1[0] + s * s * p2[0]
        y = (1 - s) ** 2 * p0[1] + 2 * (1 - s) * s * p1[1] + s * s * p2[1]
        pts.append((x, y))
    d.line(pts, fill=colour, width=width, joint="curve")


def _draw_age(d, f: _Face, skin: Colour, band: int, rng) -> None:
    """Wrinkles that grow monotonically with the age band (none in the 20s).

    band 1 (30s): one forehead line, smile lines; 2 (40s): two forehead lines, one crow's-foot
    line per eye; 3 (50s): three lines, two crow's feet, an eye bag, age spots; 4 (60+): four
    lines, three crow's feet, double eye bags, jowls and cheek lines, more spots. Each step is
    also darker than the last.
    """
    if band == 0:
        return
    u = f.u
    line = _shade(skin, 0.55)
    c = _rgba(line, 130 + 30 * band)
    lw = _w(f, 3)  # wrinkle width: 1.5 px in a 128-pixel picture
    # forehead lines: exactly `band` of them, from the brows up towards the hairline
    for t in np.linspace(-0.26, -0.50, 4)[:band]:
        half = f.half(t) * rng.uniform(0.45, 0.55)
        y = f.y(t)
        sag = 0.006 * u
        _curve(d, (f.cx - half, y + sag), (f.cx, y - 2 * sag), (f.cx + half, y + sag), c, lw)
    # smile lines (nasolabial folds) from the 30s, deeper with age
    ex = 0.36 * f.W
    ey = f.y(0.0)
    my = f.y(T_MOUTH)
    mw = 0.048 * f.u
    for sgn in (-1, 1):
        p0 = (f.cx + sgn * 0.045 * u, f.y(T_NOSE) - 0.004 * u)
        p2 = (f.cx + sgn * (mw + 0.012 * u), my + 0.018 * u)
        p1 = (f.cx + sgn * (mw + 0.028 * u), (p0[1] + p2[1]) / 2)
        _curve(d, p0, p1, p2, _rgba(line, 90 + 40 * band), lw if band < 3 else _w(f, 4))
    # crow's feet from the 40s: band - 1 lines fanning out from each eye's outer corner
    for sgn in (-1, 1):
        xo = f.cx + sgn * (ex + 0.04 * u)
        for k in range(band - 1):
            dy = (k - (band - 2) / 2) * 0.014 * u
            d.line([(xo, ey + dy * 0.4), (xo + sgn * 0.024 * u, ey + dy)], fill=c, width=_w(f, 2))
    # eye bags from the 50s: one arc, two at 60+
    for sgn in (-1, 1):
        x = f.cx + sgn * ex
        for k in range(band - 2):
            off = (0.022 + 0.012 * k) * u
            d.arc([x - 0.03 * u, ey - off, x + 0.03 * u, ey + off], 20, 160, fill=c, width=_w(f, 2))
    # age spots from the 50s
    spot = _rgba(_shade(skin, 0.7), 200)
    for _ in range((0, 0, 0, 3, 7)[band]):
        t = rng.uniform(-0.5, 0.35)
        half = f.half(t) * 0.8
        x, y = f.cx + rng.uniform(-half, half), f.y(t)
        r = rng.uniform(0.004, 0.008) * u
        d.ellipse([x - r, y - r, x + r, y + r], fill=spot)
    if band >= 4:  # jowls: marionette lines and a sagging jaw line; cheek lines
        for sgn in (-1, 1):
            p0 = (f.cx + sgn * (mw + 0.004 * u), my + 0.01 * u)
            p2 = (f.cx + sgn * (mw + 0.012 * u), f.y(0.86))
            _curve(d, p0, (p0[0] + sgn * 0.008 * u, (p0[1] + p2[1]) / 2), p2, c, lw)
            t = 0.72
            x = f.cx + sgn * f.half(t) * 0.82
            jowl = (
                (x, f.y(t - 0.12)),
                (x + sgn * 0.01 * u, f.y(t)),
                (x - sgn * 0.02 * u, f.y(t + 0.12)),
            )
            _curve(d, *jowl, c, lw)
            x = f.cx + sgn * f.half(0.2) * 0.7
            d.line([(x, f.y(0.12)), (x + sgn * 0.006 * u, f.y(0.3))], fill=c, width=_w(f, 2))


def _draw_features(d, f: _Face, skin: Colour, hair: Colour, male: bool, band: int, rng) -> None:
    u = f.u
    ex = 0.36 * f.W
    ey = f.y(0.0)
    ew, eh = 0.03 * u, 0.013 * u
    iris = EYE_COLOURS[rng.integers(len(EYE_COLOURS))]
    lid = _shade(skin, 0.45)
    brow = _mix(_shade(hair, 0.7), GREY_HAIR, 0.3 * GREY_FRACTION[band])
    if _lum(brow) > _lum(skin) - 30:
        brow = _shade(brow, 0.55)
    brow_y = f.y(T_BROW)
    gaze = rng.uniform(-0.2, 0.2)
    for sgn in (-1, 1):
        x = f.cx + sgn * ex
        d.ellipse([x - ew, ey - eh, x + ew, ey + eh], fill=(245, 245, 240, 255))
        r = eh * 0.95
        ix = x + gaze * r
        d.ellipse([ix - r, ey - r, ix + r, ey + r], fill=_rgba(iris, 255))
        d.ellipse(
            [ix - r * 0.45, ey - r * 0.45, ix + r * 0.45, ey + r * 0.45], fill=(15, 15, 15, 255)
        )
        d.arc(
            [x - ew, ey - eh, x + ew, ey + eh],
            180,
            360,
            fill=_rgba(lid, 255),
            width=_w(f, 2 if male else 4),
        )
        if not male:  # eyelashes along the upper lid
            for k in range(5):
                a = math.pi * (1.1 + 0.2 * k)
                px, py = x + ew * math.cos(a), ey + eh * math.sin(a)
                tip = (px + 0.25 * (px - x), py - 0.012 * u)
                d.line([(px, py), tip], fill=(20, 15, 15, 255), width=_w(f, 2))
        # eyebrows: thick and straight for men, thin and arched for women
        bw = 0.04 * u
        thick = max(3, int(round(0.013 * u))) if male else max(2, int(round(0.005 * u)))
        arch = 0.004 * u if male else 0.014 * u
        _curve(
            d,
            (x - bw, brow_y + (0.004 * u if sgn > 0 else 0)),
            (x, brow_y - arch),
            (x + bw, brow_y + (0.004 * u if sgn < 0 else 0)),
            _rgba(brow, 255),
            thick,
        )
    # nose
    ny = f.y(T_NOSE)
    nc = _rgba(_shade(skin, 0.6), 220)
    d.arc(
        [f.cx - 0.032 * u, ny - 0.012 * u, f.cx - 0.004 * u, ny + 0.01 * u],
        60,
        200,
        fill=nc,
        width=_w(f, 2),
    )
    d.arc(
        [f.cx + 0.004 * u, ny - 0.012 * u, f.cx + 0.032 * u, ny + 0.01 * u],
        -20,
        120,
        fill=nc,
        width=_w(f, 2),
    )
    d.line(
        [(f.cx + 0.012 * u, f.y(0.08)), (f.cx + 0.016 * u, ny - 0.014 * u)],
        fill=_rgba(_shade(skin, 0.8), 180),
        width=_w(f, 2),
    )
    # mouth
    my = f.y(T_MOUTH)
    mw = 0.048 * u * rng.uniform(0.92, 1.08)
    smile = rng.uniform(0.0, 0.012) * u
    if male:
        natural = _mix(_shade(skin, 0.85), (150, 72, 70), 0.3)
        d.ellipse(
            [f.cx - mw * 0.75, my - 0.01 * u, f.cx + mw * 0.75, my + 0.016 * u],
            fill=_rgba(natural, 255),
        )
        c = _rgba(_shade(skin, 0.45), 255)
        _curve(d, (f.cx - mw, my), (f.cx, my + smile), (f.cx + mw, my), c, _w(f, 3))
    else:
        lips = _jitter(LIP_COLOURS[rng.integers(len(LIP_COLOURS))], rng, 10)
        mw *= 0.9
        upper = [
            (f.cx - mw, my),
            (f.cx - mw * 0.45, my - 0.013 * u),
            (f.cx, my - 0.007 * u),
            (f.cx + mw * 0.45, my - 0.013 * u),
            (f.cx + mw, my),
        ]
        lower = [
            (f.cx + mw * 0.6, my + 0.014 * u),
            (f.cx, my + 0.02 * u),
            (f.cx - mw * 0.6, my + 0.014 * u),
        ]
        d.polygon(upper + lower, fill=_rgba(lips, 255))
        _curve(
            d,
            (f.cx - mw, my),
            (f.cx, my + smile * 0.5),
            (f.cx + mw, my),
            _rgba(_shade(lips, 0.55), 255),
            _w(f, 2),
        )
        if rng.random() < 0.5:  # blush
            for sgn in (-1, 1):
                x = f.cx + sgn * f.half(0.25) * 0.6
                y = f.y(0.25)
                d.ellipse(
                    [x - 0.03 * u, y - 0.016 * u, x + 0.03 * u, y + 0.016 * u],
                    fill=(230, 90, 100, 45),
                )


# --- pose, background, light ----------------------------------------------------------------------


def _background(side: int, rng) -> Image.Image:
    """A plain colour or a gentle two-colour gradient at a random angle."""
    c0 = rng.integers(30, 235, size=3).astype(np.float32)
    if rng.random() < 0.5:
        return Image.new("RGB", (side, side), tuple(int(v) for v in c0))
    c1 = np.clip(c0 + rng.integers(-60, 61, size=3), 0, 255).astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    # a linear ramp: compute it coarse and let bilinear resizing (exact for a ramp) fill it in
    n = 17
    yy, xx = _grid(n)
    g = np.clip(0.5 + xx * math.cos(a) + yy * math.sin(a), 0, 1)[..., None]
    small = Image.fromarray((c0 * (1 - g) + c1 * g + 0.5).astype(np.uint8), "RGB")
    return small.resize((side, side), Image.Resampling.BILINEAR)


@lru_cache(maxsize=8)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-0.5, 0.5) for an n x n image (y, x)."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    return (yy + 0.5) / n - 0.5, (xx + 0.5) / n - 0.5


def _pose(
    layer: Image.Image, size: int, margin: float, pivot: tuple[float, float], rng
) -> Image.Image:
    """Rotate (about the face centre), scale and shift the drawing; crop the size x size frame.

    The layer has a margin of 0.2 frame sides all round, more than the pose can reveal, so the
    background fills the frame.
    """
    angle = math.radians(rng.uniform(-6, 6))
    scale = rng.uniform(0.94, 1.06)
    dx, dy = rng.uniform(-0.05, 0.05, size=2) * size
    px, py = pivot[0] - margin, pivot[1] - margin  # pivot, in output coordinates
    cos, sin = math.cos(angle), math.sin(angle)
    a, b = cos / scale, -sin / scale
    dd, e = sin / scale, cos / scale
    c = px + margin - a * (px + dx) - b * (py + dy)
    ff = py + margin - dd * (px + dx) - e * (py + dy)
    return layer.transform(
        (size, size),
        Image.Transform.AFFINE,
        (a, b, c, dd, e, ff),
        resample=Image.Resampling.BICUBIC,
    )


def _light_and_noise(img: Image.Image, rng) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = _grid(arr.shape[0])
    gain = 1.0 + rng.uniform(0, 0.18) * (xx * math.cos(a) + yy * math.sin(a)) * 2
    contrast = rng.uniform(0.85, 1.1)
    bright = rng.uniform(-12, 12)
    arr = (arr - 128.0) * contrast + 128.0 + bright
    arr = arr * gain[..., None]
    arr += rng.uniform(1.5, 4.5) * rng.standard_normal(arr.shape, dtype=np.float32)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
