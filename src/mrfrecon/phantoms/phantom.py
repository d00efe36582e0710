"""Numerical phantoms of both thighs or both legs: ground-truth maps for MRF simulation.

Geometry is defined in millimetres (:mod:`.anatomy`) and rasterized with analytic partial
volume: every structure has an (approximate) signed distance, its pixel coverage is that of a
box filter across a straight edge, and structures are composited front to back (vessels, bone,
septa, muscles, deep fascia, subcutaneous fat, skin, air). Mixed voxels get the amplitudes of
their components summed, so that the maps are what a signal model needs:
``PD·[(1 − FF)·water + FF·fat]`` is linear in the water and fat amplitudes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import anatomy as anat
from .fields import FieldBank, b1_field, df_field, df_skin_term, draw_b1_params, draw_df_params
from .pathology import CONDITION_INFO, CONDITIONS, draw_condition, draw_muscle_pathology
from .tissues import DICTIONARY_RANGES, TISSUES, draw

__all__ = ["Phantom", "make_phantom", "label_names_for", "MAP_KEYS", "BACKGROUND_VALUES"]

MAP_KEYS = ("t1h2o", "t1fat", "b1", "df", "ff", "pd")
#: Map values where there is no signal (air, cortical bone); B1 and Δf keep their smooth field.
BACKGROUND_VALUES = {"t1h2o": 1000.0, "t1fat": 350.0, "ff": 0.0, "pd": 0.0}
#: Voxels with less proton density than this are background (an edge voxel mostly of air).
PD_FLOOR = 0.02

_TISSUE_LABELS = {"subcutaneous_fat": 1, "skin": 2, "fascia": 3, "cortical_bone": 4, "marrow": 5,
                  "vessel": 6}
_FIRST_MUSCLE_LABEL = 11
_SIDES = ("right", "left")  # side 0 is the patient's right, on the image's left (radiological view)


def label_names_for(region: str) -> dict[int, str]:
    """Label id → name for a region: shared tissues, then ``right_<muscle>``, ``left_<muscle>``."""
    names = {v: k for k, v in _TISSUE_LABELS.items()}
    for i, m in enumerate(anat.muscle_names(region)):
        for s, side in enumerate(_SIDES):
            names[_FIRST_MUSCLE_LABEL + 2 * i + s] = f"{side}_{m}"
    return names


@dataclass
class Phantom:
    """Ground truth of one simulated scan.

    Attributes
    ----------
    maps
        ``"t1h2o"`` (ms), ``"t1fat"`` (ms), ``"b1"`` (a.u.), ``"df"`` (Hz), ``"ff"`` (0–1),
        ``"pd"`` (0–1; 0 outside the body and in cortical bone); each float32
        ``(slices, matrix, matrix)``, rows anterior → posterior, columns patient's right → left.
    labels
        int16 ``(slices, matrix, matrix)``, 0 = background; names in ``label_names``.
    label_names
        Label id → name (``"subcutaneous_fat"``, ``"left_vastus_lateralis"``, ...).
    foreground
        bool ``(slices, matrix, matrix)``: voxels with signal (``pd > 0``).
    region, condition, seed
        ``"thigh"`` or ``"leg"``; one of :data:`CONDITIONS`; the seed it was made from.
    attrs
        Subject-level draws (sex, age, severity, limb sizes, per-muscle target FF, oedema,
        B1/Δf parameters, geometry of the grid); JSON-serializable.
    """

    maps: dict[str, np.ndarray]
    labels: np.ndarray
    label_names: dict[int, str]
    foreground: np.ndarray
    region: str
    condition: str
    seed: int
    attrs: dict = field(default_factory=dict)

    def muscle_mask(self) -> np.ndarray:
        """bool ``(slices, matrix, matrix)``: voxels labelled as any muscle."""
        return self.labels >= _FIRST_MUSCLE_LABEL

    def label_id(self, name: str) -> int:
        """Id of a label name (``KeyError`` if the region has no such label)."""
        for k, v in self.label_names.items():
            if v == name:
                return k
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# small geometric helpers (all lengths in mm)
# ---------------------------------------------------------------------------------------------


def _cover(phi: np.ndarray, h: float) -> np.ndarray:
    """Pixel coverage of the inside (``phi < 0``) of a straight edge at signed distance ``phi``."""
    return np.clip(0.5 - phi / h, 0.0, 1.0)


def _cover_strip(d: np.ndarray, h: float, t: float) -> np.ndarray:
    """Pixel coverage of a strip of width ``t`` centred at distance ``d`` from the pixel centre."""
    d = np.abs(d)
    return np.clip(np.minimum(d + 0.5 * h, 0.5 * t) - np.maximum(d - 0.5 * h, -0.5 * t), 0.0, None) / h


def _cover_small(phi: np.ndarray, h: float, k: np.ndarray, n_slices: int, area_mm2: np.ndarray) -> np.ndarray:
    """Edge coverage of a small closed shape, rescaled per slice to its true area.

    With pixels as large as the shape (a 2 mm vessel in a 5 mm pixel) the straight-edge
    approximation overestimates the area; the rescaling keeps partial volume exact.
    ``k`` gives each point's slice, ``area_mm2`` the shape's area on each slice.
    """
    c = _cover(phi, h)
    total = np.bincount(k, weights=c, minlength=n_slices) * h * h
    scale = np.where(total > 0, area_mm2 / np.maximum(total, 1e-9), 0.0)
    return np.clip(c * np.minimum(scale, 1.0)[k], 0.0, 1.0)


def _polar_area(radius: np.ndarray) -> float:
    """Area (mm²) inside a closed outline sampled at uniformly spaced polar angles."""
    return float(0.5 * np.mean(radius**2) * 2 * np.pi)


def _ellipse_radius(a: np.ndarray, b: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class _Limb:
    """Outline of one limb on every slice: compartment, subcutaneous fat, skin (mm)."""

    def __init__(self, g: dict, side: int, cx: np.ndarray, cy: np.ndarray, scale: np.ndarray) -> None:
        self.g, self.side = g, side
        self.cx, self.cy = cx, cy  # (slices,) limb centre, mm
        self.a = g["comp_a_mm"] * scale  # (slices,) compartment semi-axes
        self.b = g["comp_b_mm"] * scale
        self.rot = np.deg2rad(g["rotation_deg"])

    def local(self, x: np.ndarray, y: np.ndarray, k: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """Image mm → limb frame (u lateral, v anterior) for slice indices ``k``."""
        sgn = -1.0 if self.side == 0 else 1.0  # the right limb's lateral side is towards image left
        dx = sgn * (x - self.cx[k])
        dy = -(y - self.cy[k])
        c, s = np.cos(self.rot), np.sin(self.rot)
        return c * dx - s * dy, s * dx + c * dy

    def r_comp(self, theta: np.ndarray, k) -> np.ndarray:
        g = self.g
        r = _ellipse_radius(self.a[k], self.b[k], theta)
        mod = 1.0
        for i, (amp, ph) in enumerate(zip(g["harm_amp"], g["harm_phase"])):
            mod = mod + amp * np.cos((i + 3) * theta + ph)  # orders 3+: the ellipse is the 2nd
        return r * mod * (1.0 - g["flat_posterior"] * np.maximum(0.0, -np.sin(theta)) ** 3)

    def subcut(self, theta: np.ndarray) -> np.ndarray:
        g = self.g
        # the fat layer is thicker where the compartment is longer (it keeps the limb's oval
        # outline: a uniform layer would round it off), modulated around the limb
        a, b = float(np.mean(self.a)), float(np.mean(self.b))
        t = g["subcut_mm"] * _ellipse_radius(a, b, theta) / np.sqrt(a * b) * (1.0 + g["subcut_var"] * np.cos(theta - np.deg2rad(g["subcut_angle_deg"]))
                              + g["subcut_harm"] * np.cos(2 * theta + g["subcut_harm_phase"]))
        return np.maximum(t, 1.5)

    def r_limb(self, theta: np.ndarray, k) -> np.ndarray:
        return self.r_comp(theta, k) + self.subcut(theta) + self.g["skin_mm"]

    def max_extent_mm(self) -> tuple[float, float]:
        """Largest half-width (LR) and half-height (AP) of the limb over the slices, mm."""
        th = np.linspace(-np.pi, np.pi, 361)
        ext_x, ext_y = 0.0, 0.0
        for k in range(self.a.size):
            r = self.r_limb(th, k)
            u, v = r * np.cos(th), r * np.sin(th)
            c, s = np.cos(self.rot), np.sin(self.rot)
            x, y = c * u + s * v, -s * u + c * v
            ext_x, ext_y = max(ext_x, np.abs(x).max()), max(ext_y, np.abs(y).max())
        return float(ext_x), float(ext_y)


class _Accumulator:
    """Front-to-back compositing of layers into water/fat amplitude sums and a label image."""

    def __init__(self, n: int) -> None:
        self.rem = np.ones(n, np.float32)
        self.pd = np.zeros(n, np.float32)
        self.wat = np.zeros(n, np.float32)
        self.fat = np.zeros(n, np.float32)
        self.t1w = np.zeros(n, np.float32)
        self.t1f = np.zeros(n, np.float32)
        self.best = np.zeros(n, np.float32)
        self.label = np.zeros(n, np.int16)  # dominant layer
        self.best_sig = np.zeros(n, np.float32)
        self.label_sig = np.zeros(n, np.int16)  # dominant layer with signal

    def add(self, cover, pd, ff, t1h2o, t1fat, label, sel=None, nested: bool = False) -> np.ndarray:
        """Paint a layer of pixel coverage ``cover`` under the layers already painted.

        ``nested=False``: the layer is independent of those above (a vessel over a muscle), it
        shows through the uncovered fraction: ``w = cover·rem``. ``nested=True``: the layers
        above lie inside this one (muscles inside the subcutaneous fat disc), so only its
        coverage beyond theirs shows: ``w = cover − (1 − rem)``; the product rule would count
        an edge pixel's overlap twice and bias areas at coarse matrices.
        ``sel`` restricts the layer to a subset (index array); the other arguments are arrays
        over that subset or scalars. Returns the layer's weights.
        """
        s = slice(None) if sel is None else sel
        rem = self.rem[s]
        if nested:
            w = np.clip(cover - (1.0 - rem), 0.0, rem)
        else:
            w = cover * rem
        return self.add_weights(w.astype(np.float32), pd, ff, t1h2o, t1fat, label, sel)

    def add_weights(self, w, pd, ff, t1h2o, t1fat, label, sel=None) -> np.ndarray:
        """Add a component of explicit volume fraction ``w`` (≤ the uncovered fraction)."""
        s = slice(None) if sel is None else sel
        self.rem[s] -= w
        wp = w * pd
        wf = wp * ff
        ww = wp - wf
        self.pd[s] += wp
        self.wat[s] += ww
        self.fat[s] += wf
        # small floor weights keep T1 defined where one component is absent (FF = 0 or 1)
        self.t1w[s] += (ww + 1e-3 * wp) * t1h2o
        self.t1f[s] += (wf + 1e-3 * wp) * t1fat
        pairs = [(self.best, self.label)]
        if np.any(pd > 0):
            pairs.append((self.best_sig, self.label_sig))
        for best, lab in pairs:
            better = w > best[s]
            best[s] = np.where(better, w, best[s])
            lab[s] = np.where(better, label, lab[s])
        return w

    def labels(self) -> np.ndarray:
        """Voxels with signal take their dominant signal-carrying tissue (a voxel of cortical
        bone with some marrow in it is marrow); the others their dominant layer (bone)."""
        return np.where(self.pd >= PD_FLOOR, self.label_sig, self.label).astype(np.int16)


# ---------------------------------------------------------------------------------------------
# the phantom
# ---------------------------------------------------------------------------------------------


def _streams(seed: int, region: str) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent generators: subject (shared by thigh and leg of a seed), anatomy, fields."""
    root = np.random.SeedSequence([int(seed) % (1 << 64), 0x6D7266])  # any int seed
    subj, thigh, leg = root.spawn(3)
    reg = thigh if region == "thigh" else leg
    geo, fld = reg.spawn(2)
    return np.random.default_rng(subj), np.random.default_rng(geo), np.random.default_rng(fld)


def _draw_subject(rng: np.random.Generator, condition: str | None) -> dict:
    drawn = draw_condition(rng)  # always consumed, so an explicit condition changes nothing else
    cond = drawn if condition is None else condition
    sex = "female" if rng.random() < 0.45 else "male"  # paper: 43 female, 52 male
    age = float(np.clip(rng.normal(53.7, 19.5), 18.0, 90.0))  # paper: 53.7 ± 19.5 years
    sev = float(rng.beta(1.4, 2.6))  # 0: unaffected … 1: end stage
    # baseline FF of muscle: the healthy range of the tissue table, rising with age (Carlier 2016)
    lo, hi = TISSUES["muscle"].ff
    base_ff = lo + (hi - lo) * float(np.clip(0.7 * (age - 18.0) / 72.0 + rng.uniform(0.0, 0.3), 0.0, 1.0))
    diffuse = rng.uniform(0.04, 0.08)  # patients: diffuse involvement beyond the selective pattern
    t1_rise = rng.uniform(0.0, 120.0)  # patients: diffuse T1H2O rise (DESIGN: medians up to 1600 ms)
    if cond != "healthy":
        base_ff += diffuse
    # every draw above and below happens whatever the condition: forcing one changes nothing else
    t = {
        "muscle_t1h2o_ms": float(draw(rng, "muscle", "t1h2o_ms")),
        "muscle_t1fat_ms": float(draw(rng, "muscle", "t1fat_ms")),
        "muscle_pd": float(draw(rng, "muscle", "pd")),
        "fat_t1h2o_ms": float(draw(rng, "subcutaneous_fat", "t1h2o_ms")),
        "fat_t1fat_ms": float(draw(rng, "subcutaneous_fat", "t1fat_ms")),
        "fat_ff": float(draw(rng, "subcutaneous_fat", "ff")),
        "fat_pd": float(draw(rng, "subcutaneous_fat", "pd")),
        "marrow_t1h2o_ms": float(draw(rng, "marrow", "t1h2o_ms")),
        "marrow_t1fat_ms": float(draw(rng, "marrow", "t1fat_ms")),
        "marrow_ff": float(draw(rng, "marrow", "ff")),
        "marrow_pd": float(draw(rng, "marrow", "pd")),
        "skin_t1h2o_ms": float(draw(rng, "skin", "t1h2o_ms")),
        "skin_ff": float(draw(rng, "skin", "ff")),
        "skin_pd": float(draw(rng, "skin", "pd")),
        "fascia_t1h2o_ms": float(draw(rng, "fascia", "t1h2o_ms")),
        "fascia_ff": float(draw(rng, "fascia", "ff")),
        "fascia_pd": float(draw(rng, "fascia", "pd")),
        "vessel_t1h2o_ms": float(draw(rng, "vessel", "t1h2o_ms")),
        "vessel_pd": float(draw(rng, "vessel", "pd")),
        "muscle_t1_disease_ms": float(t1_rise * sev) if cond != "healthy" else 0.0,
    }
    if cond == "healthy":
        sev = 0.0
    return {"condition": cond, "sex": sex, "age": age, "severity": sev, "base_ff": float(base_ff),
            "tissue": t, "b1": draw_b1_params(rng), "df": draw_df_params(rng),
            "bulk": float(np.clip(1.0 - 0.2 * sev + rng.normal(0.0, 0.04), 0.7, 1.1))}


def make_phantom(region: str = "thigh", *, seed: int, matrix: int = 350, fov_mm: float = 350.0,
                 slices: int = 5, slice_thickness_mm: float = 8.0, condition: str | None = None) -> Phantom:
    """Make the ground-truth maps of one subject's thighs or legs.

    Parameters
    ----------
    region
        ``"thigh"`` or ``"leg"`` (calves); both limbs side by side, patient's right on the left.
    seed
        Subject seed. The same seed gives the same subject (sex, age, condition, severity, B1
        and Δf fields) for both regions and the same anatomy at every matrix size.
    matrix
        Pixels per side of the square field of view (350 → 1 mm pixels as in the paper).
    fov_mm
        Side of the field of view, mm.
    slices, slice_thickness_mm
        Consecutive slices of the stack and their spacing/thickness (mm), proximal first.
    condition
        One of :data:`CONDITIONS`, or ``None`` to draw one from the seed.

    Returns
    -------
    Phantom
        Maps float32 ``(slices, matrix, matrix)``; see :class:`Phantom`.
    """
    if region not in anat.REGIONS:
        raise ValueError(f"region must be one of {anat.REGIONS}, got {region!r}")
    if condition is not None and condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS} or None, got {condition!r}")
    if matrix < 8 or slices < 1 or fov_mm <= 0 or slice_thickness_mm <= 0:
        raise ValueError("matrix must be >= 8, slices >= 1, fov_mm and slice_thickness_mm > 0")

    rs, rg, rf = _streams(seed, region)
    subj = _draw_subject(rs, condition)
    cond = subj["condition"]
    A = anat.REGION_ANATOMY[region]
    muscles = anat.muscle_names(region)
    M = len(muscles)

    # --- grid (mm) ---------------------------------------------------------------------------
    h = fov_mm / matrix
    xs = ((np.arange(matrix) + 0.5) * h - 0.5 * fov_mm).astype(np.float32)
    ys = xs.copy()
    zs = ((np.arange(slices) - 0.5 * (slices - 1)) * slice_thickness_mm).astype(np.float32)
    level = float(rg.uniform(*A.level_mm))
    zeta = level + zs  # level of each slice relative to the template level, mm (distal > 0)

    # --- limbs: geometry, left/right asymmetry, placement inside the field of view ------------
    g0 = anat.draw_limb(rg, region, subj["sex"], subj["bulk"])
    limbs_g = []
    for side in range(2):
        g = dict(g0)
        asym = float(rg.normal(0.0, 0.025))
        g["comp_a_mm"] *= 1.0 + asym
        g["comp_b_mm"] *= 1.0 + asym + float(rg.normal(0.0, 0.01))
        g["subcut_mm"] *= float(np.exp(rg.normal(0.0, 0.06)))
        g["rotation_deg"] = g0["rotation_deg"] + float(rg.normal(0.0, 3.0))
        g["muscle_jitter"] = (np.asarray(g0["muscle_jitter"]) + rg.normal(0.0, 0.3, (M, 5))).tolist()
        limbs_g.append(g)
    gap = float(rg.uniform(*A.gap_mm))
    cy0 = float(rg.uniform(-12.0, 12.0))
    drift = float(rg.uniform(-2.0, 2.0))  # mm per 10 mm: the limbs converge or diverge distally
    scale = 1.0 + limbs_g[0]["taper"] * zs / 100.0
    probe = [_Limb(g, s, np.zeros(slices), np.zeros(slices), scale) for s, g in enumerate(limbs_g)]
    ext = [p.max_extent_mm() for p in probe]
    half_fov = 0.5 * fov_mm
    max_drift = abs(drift) * float(np.abs(zs).max()) / 10.0
    avail = fov_mm - 6.0 - 2 * max_drift
    widths = 2 * ext[0][0] + 2 * ext[1][0]
    gap = float(np.clip(avail - widths, 2.0, gap))  # limbs closer together where space is short
    fit = min(1.0, (avail - gap) / widths, (half_fov - 4.0 - abs(cy0)) / max(e[1] for e in ext))
    if fit < 1.0:  # a subject still too large is shrunk to fit the field of view
        for g in limbs_g:
            for key in ("comp_a_mm", "comp_b_mm", "subcut_mm"):
                g[key] *= fit
        probe = [_Limb(g, s, np.zeros(slices), np.zeros(slices), scale) for s, g in enumerate(limbs_g)]
        ext = [p.max_extent_mm() for p in probe]
    span = 2 * ext[0][0] + 2 * ext[1][0] + gap  # skin to skin, both limbs
    offset = float(np.clip(rg.normal(0.0, 5.0), -(half_fov - 3 - max_drift - span / 2), half_fov - 3 - max_drift - span / 2))
    cx_r = offset - span / 2 + ext[0][0]
    cx_l = offset + span / 2 - ext[1][0]
    mid_x = cx_r + ext[0][0] + 0.5 * gap  # in the gap between the limbs
    cy_side = cy0 + rg.normal(0.0, 2.0, 2)
    limbs = [
        _Limb(limbs_g[0], 0, (cx_r - drift * zs / 10.0).astype(np.float64), np.full(slices, cy_side[0]), scale),
        _Limb(limbs_g[1], 1, (cx_l + drift * zs / 10.0).astype(np.float64), np.full(slices, cy_side[1]), scale),
    ]

    # --- pathology ------------------------------------------------------------------------------
    path = draw_muscle_pathology(rg, cond, muscles, subj["severity"], subj["base_ff"])

    # --- smooth random fields (fixed order of draws) --------------------------------------------
    fb = FieldBank(rf, xs, ys, slices, slice_thickness_mm, fov_mm)
    f_score = [fb.field(14.0, 20.0) for _ in range(3)]   # wavy muscle borders
    f_patch = [fb.field(7.0, 12.0) for _ in range(2)]    # patchy fat replacement
    f_moth = fb.field(1.6, 8.0)                           # moth-eaten texture
    f_oed = fb.field(5.0, 10.0)                           # oedema lesions
    f_t1 = fb.field(12.0, 16.0)                           # slow T1 variation
    f_fat = fb.field(10.0, 16.0)                          # fat tissue variation
    f_b1 = fb.field(40.0, 30.0)
    f_df = fb.field(25.0, 20.0)

    # --- B1 and Δf ------------------------------------------------------------------------------
    b1 = b1_field(subj["b1"], xs, ys, zs, f_b1)
    df = df_field(subj["df"], xs, ys, zs, f_df)

    out = {k: np.empty((slices, matrix, matrix), np.float32) for k in ("pd", "wat", "fat", "t1w", "t1f")}
    labels = np.zeros((slices, matrix, matrix), np.int16)
    j_mid = int(np.clip(np.searchsorted(xs, mid_x), 0, matrix))
    col_ranges = [(0, j_mid), (j_mid, matrix)]
    limb_attrs = []
    for side, lb in enumerate(limbs):
        j0, j1 = col_ranges[side]
        if j1 <= j0:
            continue
        res = _rasterize_limb(lb, side, A, muscles, path, subj, xs[j0:j1], ys, zs, zeta, h,
                              {"score": [f[:, :, j0:j1] for f in f_score],
                               "patch": [f[:, :, j0:j1] for f in f_patch],
                               "moth": f_moth[:, :, j0:j1], "oed": f_oed[:, :, j0:j1],
                               "t1": f_t1[:, :, j0:j1], "fat": f_fat[:, :, j0:j1]})
        for key in out:
            out[key][:, :, j0:j1] = res[key]
        labels[:, :, j0:j1] = res["label"]
        df[:, :, j0:j1] += df_skin_term(subj["df"], res["depth"], res["theta"])
        limb_attrs.append({"side": _SIDES[side], "centre_x_mm": lb.cx.tolist(), "centre_y_mm": lb.cy.tolist(),
                           "comp_a_mm": lb.a.tolist(), "comp_b_mm": lb.b.tolist(),
                           "subcut_mm": lb.g["subcut_mm"], "skin_mm": lb.g["skin_mm"],
                           "rotation_deg": lb.g["rotation_deg"]})

    # --- voxel maps from the composited amplitudes ---------------------------------------------
    pd = out["pd"]
    fg = pd >= PD_FLOOR
    tot = np.maximum(out["wat"] + out["fat"], 1e-12)
    ff = np.where(fg, out["fat"] / tot, BACKGROUND_VALUES["ff"])
    floor = 1e-3 * pd
    t1h2o = np.where(fg, out["t1w"] / np.maximum(out["wat"] + floor, 1e-12), BACKGROUND_VALUES["t1h2o"])
    t1fat = np.where(fg, out["t1f"] / np.maximum(out["fat"] + floor, 1e-12), BACKGROUND_VALUES["t1fat"])
    pd = np.where(fg, pd, 0.0)
    labels[~fg & (labels != _TISSUE_LABELS["cortical_bone"])] = 0

    def clip(a, key):
        lo, hi = DICTIONARY_RANGES[key]
        return np.clip(a, lo, hi).astype(np.float32)

    maps = {"t1h2o": clip(t1h2o, "t1h2o"), "t1fat": clip(t1fat, "t1fat"), "b1": clip(b1, "b1"),
            "df": clip(df, "df"), "ff": clip(ff, "ff"), "pd": clip(pd, "pd")}

    muscle_ff = {f"{_SIDES[s]}_{m}": round(float(path["ff_target"][s, i]), 4) for s in range(2) for i, m in enumerate(muscles)}
    oedema = {f"{_SIDES[s]}_{m}": round(float(path["oedema_ms"][s, i]), 1)
              for s in range(2) for i, m in enumerate(muscles) if path["oedema_ms"][s, i] > 0}
    attrs = {
        "region": region, "condition": cond, "condition_description": CONDITION_INFO[cond].description,
        "seed": int(seed), "sex": subj["sex"], "age": round(subj["age"], 1), "severity": round(subj["severity"], 4),
        "base_ff": round(subj["base_ff"], 4), "bulk": round(subj["bulk"], 4),
        "matrix": int(matrix), "fov_mm": float(fov_mm), "pixel_mm": float(h), "slices": int(slices),
        "slice_thickness_mm": float(slice_thickness_mm), "slice_z_mm": zs.tolist(), "level_mm": level,
        "orientation": "rows anterior→posterior, columns patient right→left; slice 0 proximal",
        "limbs": limb_attrs, "gap_mm": gap, "muscle_ff_target": muscle_ff, "oedema_ms": oedema,
        "tissue": subj["tissue"], "b1_params": subj["b1"], "df_params": subj["df"],
    }
    return Phantom(maps=maps, labels=labels, label_names=label_names_for(region), foreground=maps["pd"] > 0,
                   region=region, condition=cond, seed=int(seed), attrs=attrs)


def _rasterize_limb(lb: _Limb, side: int, A: anat.RegionAnatomy, muscles: list[str], path: dict, subj: dict,
                    xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, zeta: np.ndarray, h: float,
                    fields: dict) -> dict[str, np.ndarray]:
    """Composite one limb on its part of the image (all slices); returns amplitude sums etc."""
    S, H, W = zs.size, ys.size, xs.size
    tis = subj["tissue"]
    g = lb.g
    kk = np.arange(S)[:, None, None]
    u, v = lb.local(xs[None, None, :], ys[None, :, None], kk[:, :, :])
    u = np.broadcast_to(u, (S, H, W))
    v = np.broadcast_to(v, (S, H, W))
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    kfull = np.broadcast_to(kk, (S, H, W))
    phi_limb = r - lb.r_limb(theta, kfull)
    res = {key: np.zeros((S, H, W), np.float32) for key in ("pd", "wat", "fat", "t1w", "t1f")}
    res["label"] = np.zeros((S, H, W), np.int16)
    res["depth"] = (-phi_limb).astype(np.float32)
    res["theta"] = theta.astype(np.float32)

    body = np.flatnonzero(phi_limb.ravel() < 0.5 * h)
    if body.size == 0:
        return res
    u, v, r, th = (a.ravel()[body].astype(np.float64) for a in (u, v, r, theta))
    k = kfull.ravel()[body]
    f = {key: (val.ravel()[body] if not isinstance(val, list) else [x.ravel()[body] for x in val])
         for key, val in fields.items()}
    acc = _Accumulator(body.size)
    a_k, b_k = lb.a[k], lb.b[k]
    r_comp = lb.r_comp(th, k)
    phi_comp = r - r_comp
    z_k = zs[k]
    zeta_k = zeta[k]

    # --- vessels (front layer) ---------------------------------------------------------------
    cov_v = np.zeros(body.size)
    for i, vt in enumerate(A.vessels):
        jit = g["vessel_jitter"][i]
        rv = vt.radius_mm[0] + (vt.radius_mm[1] - vt.radius_mm[0]) * _sigmoid(jit[2])
        if vt.subcutaneous:
            ang = np.deg2rad(vt.angle_deg + 6.0 * jit[0])
            t_here = float(lb.subcut(np.array(ang)))
            if t_here < 2 * rv + 2.0:
                continue  # too little fat to hold the vein
            rc = lb.r_comp(np.full(S, ang), np.arange(S)) + 0.5 * t_here
            cu, cv = rc * np.cos(ang), rc * np.sin(ang)
        else:
            cu = (vt.centre[0] + 0.03 * jit[0]) * lb.a
            cv = (vt.centre[1] + 0.03 * jit[1]) * lb.b
        d = np.hypot(u - cu[k], v - cv[k]) - rv
        cov_v = np.maximum(cov_v, _cover_small(d, h, k, S, np.full(S, np.pi * rv * rv)))
    acc.add(cov_v, tis["vessel_pd"], 0.0, tis["vessel_t1h2o_ms"], tis["fat_t1fat_ms"], _TISSUE_LABELS["vessel"])

    # --- bones: marrow in front of cortex ------------------------------------------------------
    cov_bone = np.zeros(body.size)
    cov_marrow = np.zeros(body.size)
    th_s = np.linspace(-np.pi, np.pi, 360, endpoint=False)
    for i, bt in enumerate(A.bones):
        jit = g["bone_jitter"][i]
        ro = bt.outer_mm[0] + (bt.outer_mm[1] - bt.outer_mm[0]) * _sigmoid(jit[2])
        ri = bt.marrow_mm[0] + (bt.marrow_mm[1] - bt.marrow_mm[0]) * _sigmoid(jit[3])
        ri = min(ri, ro - 3.0)  # cortex at least 3 mm thick

        def outer(a):
            return ro * (1.0 + bt.lobe_amp * np.cos(bt.lobes * (a - np.deg2rad(bt.lobe_angle_deg)))
                         + bt.ridge_amp * np.exp(-(_wrap(a - np.deg2rad(bt.ridge_angle_deg)) / 0.3) ** 2))

        def inner(a):
            return ri * (1.0 + 0.6 * bt.lobe_amp * np.cos(bt.lobes * (a - np.deg2rad(bt.lobe_angle_deg))))

        cu = (bt.centre[0] + bt.d_centre[0] * zeta / 100.0 + 0.03 * jit[0]) * lb.a
        cv = (bt.centre[1] + bt.d_centre[1] * zeta / 100.0 + 0.03 * jit[1]) * lb.b
        if bt.subcutaneous_deg is not None:  # e.g. the tibia's medial face lies under the skin
            ang = np.deg2rad(bt.subcutaneous_deg)
            d_u, d_v = np.cos(ang), np.sin(ang)
            r_dir = lb.r_comp(np.full(S, ang), np.arange(S))
            shift = r_dir - 0.75 * ro - (cu * d_u + cv * d_v)
            cu, cv = cu + shift * d_u, cv + shift * d_v
        du, dv = u - cu[k], v - cv[k]
        rho = np.hypot(du, dv)
        ang_b = np.arctan2(dv, du)
        cov_bone = np.maximum(cov_bone, _cover_small(rho - outer(ang_b), h, k, S, np.full(S, _polar_area(outer(th_s)))))
        cov_marrow = np.maximum(cov_marrow, _cover_small(rho - inner(ang_b), h, k, S, np.full(S, _polar_area(inner(th_s)))))
    fz = f["fat"]
    acc.add(cov_marrow, tis["marrow_pd"], np.clip(tis["marrow_ff"] + 0.01 * fz, 0.8, 0.99),
            tis["marrow_t1h2o_ms"], tis["marrow_t1fat_ms"] + 6.0 * fz, _TISSUE_LABELS["marrow"])
    acc.add(cov_bone, 0.0, 0.0, 1000.0, 350.0, _TISSUE_LABELS["cortical_bone"], nested=True)

    # --- muscles: scores, best two, distance to the septum between them -----------------------
    cov_comp = _cover(phi_comp, h)
    inside = np.flatnonzero((cov_comp > 0) & (acc.rem > 1e-4))
    if inside.size:
        qu = u[inside] / a_k[inside]
        qv = v[inside] / b_k[inside]
        zi = zeta_k[inside]
        jit = np.asarray(g["muscle_jitter"])
        scores = np.full((len(A.muscles), inside.size), -np.inf)
        gu = np.zeros_like(scores)
        gv = np.zeros_like(scores)
        zsc = [fs[inside] for fs in f["score"]]
        for m, mt in enumerate(A.muscles):
            # smooth per-muscle perturbation of the score: wavy, subject-specific borders
            noise = 0.05 * (np.cos(m * 2.1) * zsc[0] + np.sin(m * 2.1) * zsc[1] + 0.7 * np.cos(m * 1.3) * zsc[2])
            for centre, radii, angle, bias0 in mt.seeds():
                cu = centre[0] + mt.d_centre[0] * zi / 100.0 + 0.03 * jit[m, 0]
                cv = centre[1] + mt.d_centre[1] * zi / 100.0 + 0.03 * jit[m, 1]
                ru = radii[0] * np.exp(0.07 * jit[m, 2])
                rv = radii[1] * np.exp(0.07 * jit[m, 3])
                al = np.deg2rad(angle + 5.0 * jit[m, 4])
                ca, sa = np.cos(al), np.sin(al)
                du, dv = qu - cu, qv - cv
                p1 = ca * du + sa * dv
                p2 = -sa * du + ca * dv
                bias = bias0 + mt.d_bias * zi / 100.0 + 0.03 * jit[m, 0] * jit[m, 1]
                sc = bias - (p1 / ru) ** 2 - (p2 / rv) ** 2 + noise
                better = sc > scores[m]
                scores[m] = np.where(better, sc, scores[m])
                # score gradient in mm (noise neglected): distances to septa below
                gu[m] = np.where(better, -2.0 * (p1 * ca / ru**2 - p2 * sa / rv**2) / a_k[inside], gu[m])
                gv[m] = np.where(better, -2.0 * (p1 * sa / ru**2 + p2 * ca / rv**2) / b_k[inside], gv[m])
        cols = np.arange(inside.size)
        m1 = np.argmax(scores, axis=0)
        s1 = scores[m1, cols]
        scores[m1, cols] = -np.inf
        m2 = np.argmax(scores, axis=0)
        s2 = scores[m2, cols]
        grad = np.hypot(gu[m1, cols] - gu[m2, cols], gv[m1, cols] - gv[m2, cols])
        d_sep = (s1 - s2) / np.maximum(grad, 1e-6)  # mm from the septum, > 0
        depth = -phi_comp[inside]
        d_edge = np.minimum(d_sep, depth)

        # septa (fascia with a little intermuscular fat), in front of the muscles
        cov_sep = _cover_strip(d_sep, h, g["fascia_mm"]) * cov_comp[inside]
        fzi = fz[inside]
        acc.add(cov_sep, tis["fascia_pd"], np.clip(tis["fascia_ff"] + 0.1 * fzi, 0.05, 0.9), tis["fascia_t1h2o_ms"],
                tis["fat_t1fat_ms"], _TISSUE_LABELS["fascia"], sel=inside)

        share1 = np.clip(0.5 + d_sep / h, 0.5, 1.0)
        fields_i = {"patch": [x[inside] for x in f["patch"]], "moth": f["moth"][inside], "oed": f["oed"][inside],
                    "t1": f["t1"][inside], "fat": fzi}
        # the muscles fill what the compartment covers beyond the structures inside it
        rem_in = acc.rem[inside]
        w_mus = np.clip(cov_comp[inside] - (1.0 - rem_in), 0.0, rem_in)
        z_in = z_k[inside]
        for mm, share in ((m1, share1), (m2, 1.0 - share1)):
            sub = np.flatnonzero(share > 0)
            if sub.size == 0:
                continue
            props = _muscle_props(mm[sub], side, path, subj,
                                  {key: (val[sub] if not isinstance(val, list) else [x[sub] for x in val])
                                   for key, val in fields_i.items()},
                                  qu[sub], qv[sub], z_in[sub], d_edge[sub])
            lab = (_FIRST_MUSCLE_LABEL + 2 * mm[sub] + side).astype(np.int16)
            acc.add_weights((w_mus[sub] * share[sub]).astype(np.float32), *props, lab, sel=inside[sub])

    # --- deep fascia, subcutaneous fat, skin ---------------------------------------------------
    acc.add(_cover(phi_comp - g["fascia_mm"], h), tis["fascia_pd"], tis["fascia_ff"], tis["fascia_t1h2o_ms"],
            tis["fat_t1fat_ms"], _TISSUE_LABELS["fascia"], nested=True)
    phi_l = phi_limb.ravel()[body]
    acc.add(_cover(phi_l + g["skin_mm"], h), tis["fat_pd"], np.clip(tis["fat_ff"] + 0.012 * fz, 0.85, 0.99),
            tis["fat_t1h2o_ms"], tis["fat_t1fat_ms"] + 8.0 * fz, _TISSUE_LABELS["subcutaneous_fat"], nested=True)
    acc.add(_cover(phi_l, h), tis["skin_pd"], tis["skin_ff"], tis["skin_t1h2o_ms"], tis["fat_t1fat_ms"],
            _TISSUE_LABELS["skin"], nested=True)

    for key, arr in (("pd", acc.pd), ("wat", acc.wat), ("fat", acc.fat), ("t1w", acc.t1w), ("t1f", acc.t1f)):
        res[key].ravel()[body] = arr
    res["label"].ravel()[body] = acc.labels()
    return res


def _muscle_props(m: np.ndarray, side: int, path: dict, subj: dict, f: dict, qu: np.ndarray, qv: np.ndarray,
                  z_mm: np.ndarray, d_edge: np.ndarray) -> tuple[np.ndarray, ...]:
    """(pd, ff, t1h2o, t1fat) of muscle voxels; ``m`` muscle indices, ``d_edge`` mm to its border."""
    tis = subj["tissue"]
    P = {key: val[side] for key, val in path.items()}
    mix = P["mix"][m]
    ang = P["grad_angle"][m]
    logit = (P["logit"][m]
             + P["patchy"][m] * (mix[:, 0] * f["patch"][0] + mix[:, 1] * f["patch"][1])
             + P["moth"][m] * 1.5 * np.maximum(f["moth"] - 0.4, 0.0)
             + P["peripheral"][m] * (np.exp(-np.maximum(d_edge, 0.0) / 4.0) - 0.3)
             + P["grad"][m] * (np.cos(ang) * qu + np.sin(ang) * qv)
             + P["grad_z"][m] * z_mm / 40.0)
    ff = np.clip(_sigmoid(logit), 0.005, 0.99)
    lesion = _sigmoid((f["oed"] - P["oedema_thr"][m]) / 0.15)
    t1 = (tis["muscle_t1h2o_ms"] + tis["muscle_t1_disease_ms"] + P["t1_offset_ms"][m] + 15.0 * f["t1"]
          + P["oedema_ms"][m] * lesion)
    t1fat = tis["muscle_t1fat_ms"] + 8.0 * f["fat"]
    pd = tis["muscle_pd"] * (1.0 - ff) + tis["fat_pd"] * ff  # replaced muscle takes adipose tissue's PD
    return pd, ff, t1, t1fat
