"""Cross-sectional anatomy of the thighs and legs (calves), defined in millimetres.

Each limb is described in its own polar frame: ``u`` points laterally, ``v`` anteriorly (mm),
``θ = atan2(v, u)``. The muscle compartment is a perturbed ellipse; subcutaneous fat of
angle-dependent thickness and the skin surround it. Bones are placed in the compartment,
muscles partition the rest of it: each muscle has an anisotropic quadratic "score" centred on
its seed, every point belongs to the muscle with the highest score (a curved power diagram,
so muscles are smooth convex-ish blobs that tile the compartment without gaps, like real
muscles packed inside the deep fascia). Template seeds change linearly with the level along
the limb, so the five slices of a scan change smoothly.

Anatomical arrangement at mid-thigh and at the proximal third of the leg follows standard
cross-sectional anatomy atlases (Bergman, Afifi, Jew & Reimann, "Atlas of Human Anatomy in Cross
Section", section 7, lower limb, anatomyatlases.org; the Visible Human transverse sections;
Moeller & Reif, "Pocket Atlas of Sectional Anatomy", vol. 3): quadriceps anterior, adductors and
gracilis medial, hamstrings posterior, sartorius anteromedial over the adductor canal with the
femoral vessels, the linea aspera on the femur's posterior face; the femur is off the limb's
centre, medial and posterior of it (the lateral vasti and the anterior quadriceps are the
thickest muscle layers around it); tibia anteromedial with its medial face under the skin,
fibula lateral and posterior to it ("The fibula ... lies lateral and posterior to the tibia",
Tintinalli's Emergency Medicine, ch. 272, leg injuries), anterior compartment (tibialis
anterior, extensor digitorum longus), lateral compartment (peronei), deep posterior (tibialis
posterior, flexor digitorum longus) and superficial posterior (soleus, gastrocnemii)
compartments.

Outline. Limbs of supine patients are not round: two thighs of 15–18 cm side by side fill most
of a 350 mm field of view and press against each other and the table, and axial images show
ovals whose principal-axis ratio (the square root of the ratio of the second moments of the
outline) is about 1.2–1.3 for the thigh (issue 13, measured on published axial images), with
the long axis near anteroposterior, and somewhat less for the calf. The compartment's AP/LR
semi-axis ratio is drawn per subject (``aspect``); the subcutaneous fat, thickest posteromedially
in the thigh (gynoid distribution) and posteriorly over the calf, varies around the limb by a
first and a second harmonic whose amplitudes are drawn per subject.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MuscleTemplate", "BoneTemplate", "VesselTemplate", "REGION_ANATOMY", "REGIONS",
           "draw_limb", "muscle_names"]


@dataclass(frozen=True)
class MuscleTemplate:
    """Seed of one muscle in normalized compartment coordinates (±1 at the deep fascia).

    ``centre`` (u lateral, v anterior), ``radii`` (along the muscle's own axes, rotated by
    ``angle_deg`` counter-clockwise from u), ``bias`` (larger → bigger territory). ``d_*`` give the
    change per 100 mm distally along the limb.
    """

    name: str
    centre: tuple[float, float]
    radii: tuple[float, float]
    angle_deg: float = 0.0
    bias: float = 0.0
    d_centre: tuple[float, float] = (0.0, 0.0)
    d_bias: float = 0.0
    #: further seeds ``(centre, radii, angle_deg, bias)`` of the same muscle: their union gives
    #: non-convex shapes (the soleus crescent, the vastus intermedius around the femur)
    extra: tuple[tuple[tuple[float, float], tuple[float, float], float, float], ...] = ()

    def seeds(self) -> list[tuple[tuple[float, float], tuple[float, float], float, float]]:
        return [(self.centre, self.radii, self.angle_deg, self.bias), *self.extra]


@dataclass(frozen=True)
class BoneTemplate:
    """A long bone: ``centre`` in normalized coordinates, radii in mm (outer, marrow).

    ``lobes``/``lobe_amp``/``lobe_angle_deg`` shape the outline (a tibia is a rounded triangle);
    ``ridge_amp`` and ``ridge_angle_deg`` add a narrow ridge (the femur's linea aspera).
    ``subcutaneous_deg``: if set, the bone is pushed to the deep fascia in that direction.
    """

    name: str
    centre: tuple[float, float]
    outer_mm: tuple[float, float]
    marrow_mm: tuple[float, float]
    lobes: int = 0
    lobe_amp: float = 0.0
    lobe_angle_deg: float = 90.0
    ridge_amp: float = 0.0
    ridge_angle_deg: float = -90.0
    subcutaneous_deg: float | None = None
    d_centre: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class VesselTemplate:
    """A vessel: in the compartment at normalized ``centre``, or (``subcutaneous``) in the fat
    at polar angle ``angle_deg`` and half-way through the fat layer. Radius in mm."""

    name: str
    radius_mm: tuple[float, float]
    centre: tuple[float, float] = (0.0, 0.0)
    subcutaneous: bool = False
    angle_deg: float = 0.0


@dataclass(frozen=True)
class RegionAnatomy:
    """Templates and subject-size ranges of one region (``thigh`` or ``leg``)."""

    muscles: tuple[MuscleTemplate, ...]
    bones: tuple[BoneTemplate, ...]
    vessels: tuple[VesselTemplate, ...]
    compartment_mm: dict[str, tuple[float, float]]   # mean compartment radius by sex
    subcut_mm: dict[str, tuple[float, float]]        # mean subcutaneous fat thickness by sex
    aspect: tuple[float, float]                       # AP / LR semi-axis ratio of the compartment
    taper_per_100mm: tuple[float, float]              # relative radius change distally
    gap_mm: tuple[float, float]                       # skin-to-skin gap between the limbs
    level_mm: tuple[float, float]                     # stack centre relative to the template level
    fat_thick_angle_deg: float                        # where subcutaneous fat is thickest


THIGH = RegionAnatomy(
    muscles=(
        MuscleTemplate("rectus_femoris", (0.00, 0.76), (0.30, 0.20), 0, 0.0, (0.0, 0.04), -0.08),
        MuscleTemplate("vastus_lateralis", (0.64, 0.08), (0.30, 0.56), 10, 0.05),
        MuscleTemplate("vastus_intermedius", (-0.12, 0.14), (0.36, 0.20), -15, 0.05,
                       extra=(((0.10, -0.20), (0.14, 0.22), 0.0, 0.02),)),
        MuscleTemplate("vastus_medialis", (-0.44, 0.46), (0.26, 0.28), 40, -0.08, (-0.02, 0.0), 0.2),
        MuscleTemplate("sartorius", (-0.74, 0.14), (0.24, 0.12), 70, -0.04, (0.0, -0.18), 0.0),
        MuscleTemplate("gracilis", (-0.90, -0.26), (0.20, 0.10), 110, -0.04, (0.0, -0.05), 0.0),
        MuscleTemplate("adductor_longus", (-0.46, 0.06), (0.24, 0.15), 35, -0.04, (0.03, 0.0), -0.3),
        MuscleTemplate("adductor_magnus", (-0.36, -0.32), (0.32, 0.26), 30, -0.02, (0.0, 0.0), -0.12),
        MuscleTemplate("semimembranosus", (-0.40, -0.70), (0.26, 0.22), 20, 0.0, (0.02, 0.0), 0.25),
        MuscleTemplate("semitendinosus", (-0.08, -0.84), (0.26, 0.18), 0, 0.0, (0.0, 0.0), -0.05),
        MuscleTemplate("biceps_femoris", (0.32, -0.70), (0.30, 0.26), -20, 0.02, (-0.02, 0.02), 0.05),
    ),
    bones=(
        # medial and posterior of the compartment's centre (module docstring)
        BoneTemplate("femur", (-0.24, -0.22), outer_mm=(12.5, 15.5), marrow_mm=(6.5, 9.0),
                     ridge_amp=0.18, ridge_angle_deg=-95.0, d_centre=(-0.03, 0.0)),
    ),
    vessels=(
        VesselTemplate("femoral_artery", (3.0, 4.0), centre=(-0.56, 0.20)),
        VesselTemplate("femoral_vein", (3.5, 5.0), centre=(-0.56, 0.08)),
        VesselTemplate("deep_femoral_vessels", (2.0, 3.0), centre=(-0.16, -0.24)),
        VesselTemplate("great_saphenous_vein", (2.0, 2.8), subcutaneous=True, angle_deg=-165.0),
    ),
    compartment_mm={"male": (56.0, 68.0), "female": (48.0, 60.0)},
    subcut_mm={"male": (9.0, 24.0), "female": (15.0, 34.0)},
    aspect=(1.12, 1.30),
    taper_per_100mm=(-0.12, -0.04),
    gap_mm=(2.0, 14.0),
    level_mm=(-40.0, 40.0),
    fat_thick_angle_deg=-150.0,
)

LEG = RegionAnatomy(
    muscles=(
        MuscleTemplate("tibialis_anterior", (0.06, 0.66), (0.22, 0.26), 0, 0.0),
        MuscleTemplate("extensor_digitorum_longus", (0.40, 0.50), (0.15, 0.22), -30, -0.04, (0.0, 0.0), 0.05),
        MuscleTemplate("peronei", (0.78, 0.14), (0.20, 0.30), -10, 0.0),
        MuscleTemplate("tibialis_posterior", (0.08, 0.10), (0.22, 0.14), 20, -0.02),
        MuscleTemplate("flexor_digitorum_longus", (-0.30, 0.04), (0.12, 0.12), 0, -0.06, (0.0, 0.0), 0.15),
        MuscleTemplate("soleus", (0.0, -0.34), (0.36, 0.16), 0, 0.0, (0.0, 0.0), 0.15,
                       extra=(((-0.48, -0.10), (0.20, 0.13), 65.0, 0.0), ((0.44, -0.18), (0.16, 0.14), -60.0, -0.02))),
        MuscleTemplate("medial_gastrocnemius", (-0.30, -0.70), (0.36, 0.28), 15, 0.22, (0.0, 0.0), -0.3),
        MuscleTemplate("lateral_gastrocnemius", (0.34, -0.66), (0.28, 0.25), -15, 0.14, (0.0, 0.0), -0.35),
    ),
    bones=(
        BoneTemplate("tibia", (-0.30, 0.46), outer_mm=(11.0, 14.0), marrow_mm=(5.0, 7.5), lobes=3,
                     lobe_amp=0.14, lobe_angle_deg=100.0, subcutaneous_deg=150.0),
        BoneTemplate("fibula", (0.56, -0.02), outer_mm=(6.0, 8.0), marrow_mm=(2.3, 3.3), lobes=3,
                     lobe_amp=0.08, lobe_angle_deg=0.0),
    ),
    vessels=(
        VesselTemplate("anterior_tibial_vessels", (1.5, 2.2), centre=(0.18, 0.34)),
        VesselTemplate("posterior_tibial_vessels", (2.0, 3.0), centre=(-0.20, -0.06)),
        VesselTemplate("peroneal_vessels", (1.6, 2.4), centre=(0.40, -0.10)),
        VesselTemplate("great_saphenous_vein", (1.8, 2.6), subcutaneous=True, angle_deg=175.0),
        VesselTemplate("small_saphenous_vein", (1.5, 2.2), subcutaneous=True, angle_deg=-95.0),
    ),
    compartment_mm={"male": (44.0, 54.0), "female": (39.0, 48.0)},
    subcut_mm={"male": (6.0, 16.0), "female": (9.0, 24.0)},
    aspect=(1.12, 1.32),
    taper_per_100mm=(-0.10, 0.04),
    gap_mm=(15.0, 60.0),
    level_mm=(-30.0, 30.0),
    fat_thick_angle_deg=-120.0,
)

REGION_ANATOMY: dict[str, RegionAnatomy] = {"thigh": THIGH, "leg": LEG}
REGIONS: tuple[str, ...] = tuple(REGION_ANATOMY)


def muscle_names(region: str) -> list[str]:
    """Names of the region's muscles, in label order."""
    return [m.name for m in REGION_ANATOMY[region].muscles]


def draw_limb(rng: np.random.Generator, region: str, sex: str, bulk: float) -> dict:
    """Subject-level geometry of one limb (before left/right asymmetry), JSON-serializable.

    ``bulk`` scales the muscle compartment (atrophy < 1). Lengths in mm, angles in degrees.
    """
    a = REGION_ANATOMY[region]
    r_comp = rng.uniform(*a.compartment_mm[sex]) * bulk
    aspect = rng.uniform(*a.aspect)
    n_h = 4
    return {
        "comp_a_mm": float(r_comp / np.sqrt(aspect)),   # LR semi-axis
        "comp_b_mm": float(r_comp * np.sqrt(aspect)),   # AP semi-axis
        # harmonics 3..6 of the outline, weaker with order: smooth, convex-looking limbs (the
        # 2nd is the ellipse itself; a random 2nd harmonic would round some limbs off)
        "harm_amp": (np.clip(rng.normal(0.0, 1.0, n_h), -2, 2) * 0.025 / np.arange(1, n_h + 1)).tolist(),
        "harm_phase": rng.uniform(0, 2 * np.pi, n_h).tolist(),
        "flat_posterior": float(rng.uniform(0.03, 0.12)),  # supine: flattened on the table
        "subcut_mm": float(rng.uniform(*a.subcut_mm[sex])),
        "subcut_var": float(rng.uniform(0.15, 0.5)),       # relative modulation around the limb
        "subcut_angle_deg": float(a.fat_thick_angle_deg + rng.normal(0, 25)),
        "subcut_harm": float(rng.uniform(0.03, 0.18)),
        # 2nd harmonic of the fat layer: thicker at the ends of the long (AP) axis, ± 60°
        "subcut_harm_phase": float(np.pi + rng.uniform(-np.pi / 3, np.pi / 3)),
        "skin_mm": float(rng.uniform(1.4, 2.4)),
        "taper": float(rng.uniform(*a.taper_per_100mm)),
        "rotation_deg": float(rng.normal(0.0, 8.0)),  # tilt of the long axis
        "fascia_mm": float(rng.uniform(0.6, 1.3)),
        "muscle_jitter": rng.normal(0.0, 1.0, (len(a.muscles), 5)).tolist(),
        "bone_jitter": rng.normal(0.0, 1.0, (len(a.bones), 4)).tolist(),
        "vessel_jitter": rng.normal(0.0, 1.0, (len(a.vessels), 3)).tolist(),
    }
