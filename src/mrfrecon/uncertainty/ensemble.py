"""Networks with uncertainty: the spread of an ensemble, and a check of the maps against the data.

Ensemble (Lakshminarayanan et al., "Simple and scalable predictive uncertainty estimation using
deep ensembles", NeurIPS 2017): several checkpoints of one network trained with different seeds
(or several networks trained on the same data and maps) predict the same scan; the map is their
mean and the spread their SD (``ddof=1``). Checkpoints that predict different things cannot be
pooled: another sequence, other maps, another map normalization or another training target is
refused (:func:`check_ensemble`).

Data consistency: a network's T1H2O, FF and B1 are put back into the signal model and held
there; Δf, T1fat and the complex PD are fitted by the dictionary restricted to the grid values
of T1H2O and B1 nearest to the network's, with the water–fat mix fixed at the network's FF:
for every (Δf, T1fat) the atom ``(1 − FF)·w + FF·f`` and its best complex amplitude. The
relative residual of the best fit is compared with the same fit at matching's own T1H2O, FF and B1
(so both residuals hold the same fitted nuisance parameters and the same grid): a network map
that explains the data clearly worse than matching's is contradicted by the data. The test is a
likelihood ratio, ``T = (‖r_net‖² − ‖r_match‖²) / (σ²/2)`` with the noise level ``σ`` of
matching's residual, which would be χ² with 3 degrees of freedom (T1H2O, FF, B1 held) under white
noise; the artefacts of real frames make it heavier-tailed, so voxels are flagged
:data:`~mrfrecon.uncertainty.fisher.CONTRADICTED` above a level measured on the ground truth
(:data:`CONTRADICTION_LEVEL`, or a calibration's).

One SD per map (:func:`combined_sd`): the ensemble's spread and the part of the network's
distance from matching's estimate — the data's own answer — that matching's SD does not
explain: ``sqrt(SD_ens² + max(d² − SD_match², 0))``, ``d = net − match``. Measured: a seed
ensemble's spread alone misses the bias its members share (coverage 58–77 %, Spearman's ρ ≤ 0.12);
the combination ranks the errors (ρ 0.53 for T1H2O) and a fitted scale calibrates it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..checkpoint import Checkpoint
from ..dictionary import Dictionary
from ..errors import MrfreconError
from .calibration import Calibration
from .fisher import CONTRADICTED

__all__ = ["CONTRADICTION_LEVEL", "check_ensemble", "combined_sd", "consistency_residual", "data_consistency",
           "ensemble_stats", "network_uncertainty"]

#: flag threshold of the likelihood-ratio statistic. Not χ²₃'s (16.3 at 99.9 %): the reconstruction's
#: artefacts are not white noise, and the ground-truth maps of the study preset's scans exceeded
#: that level in 7–18 % of their voxels. This is the statistic's 99th percentile for the ground truth
#: on 6 study-preset scans (docs/UNCERTAINTY.md); a calibration file's ``contradiction_level`` replaces it.
CONTRADICTION_LEVEL = 112.0


def check_ensemble(checkpoints: Sequence[Checkpoint], *, spread: bool = True) -> None:
    """Refuse checkpoints that cannot be pooled, with one line naming the two files.

    Parameters
    ----------
    checkpoints
        Loaded checkpoints.
    spread
        A spread is asked for: one checkpoint is refused.
    """
    if not checkpoints:
        raise MrfreconError("ensemble: no checkpoints given")
    if spread and len(checkpoints) < 2:
        raise MrfreconError(f"ensemble: a spread needs at least 2 checkpoints, got 1 ({checkpoints[0].path}); "
                            "give several (e.g. a study's seeds) or drop the request for an SD")
    first = checkpoints[0]
    for ck in checkpoints[1:]:
        for what, a, b in (
            ("sequence", first.sequence_digest, ck.sequence_digest),
            ("maps", list(first.maps), list(ck.maps)),
            ("map normalization", first.meta["map_norm"], ck.meta["map_norm"]),
            ("training target", first.target, ck.target),
        ):
            if a != b:
                raise MrfreconError(f"ensemble: {ck.path} and {first.path} differ in {what} ({b} vs {a}): their maps "
                                    "cannot be pooled")


def ensemble_stats(predictions: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Mean and spread of the members' maps.

    Parameters
    ----------
    predictions
        One dict per member, map name → array (all the same names and shapes).

    Returns
    -------
    dict
        ``<map>`` the mean (float32) and ``sd_<map>`` the SD over members with ``ddof=1`` (float32).
    """
    if len(predictions) < 2:
        raise MrfreconError(f"ensemble: a spread needs at least 2 members, got {len(predictions)}")
    names = list(predictions[0])
    out: dict[str, np.ndarray] = {}
    for k in names:
        stack = np.stack([np.asarray(p[k], np.float64) for p in predictions])
        out[k] = stack.mean(0).astype(np.float32)
        out[f"sd_{k}"] = stack.std(0, ddof=1).astype(np.float32)
    return out


def _compressed(dictionary: Dictionary, device: torch.device) -> tuple[torch.Tensor, ...]:
    """In the dictionary's temporal subspace (cached): the conjugated basis, the water and fat atoms,
    their squared norms and the real part of every same-(B1, Δf) water–fat inner product."""
    key = f"uncertainty:compressed:{device}"
    if key not in dictionary._cache:
        basis_conj = torch.as_tensor(dictionary.basis, device=device).conj().resolve_conj()
        w = torch.as_tensor(dictionary.water, device=device) @ basis_conj  # (nb, nd, ni, K)
        f = torch.as_tensor(dictionary.fat, device=device) @ basis_conj  # (nb, nd, nj, K)
        ww = (w.real.square() + w.imag.square()).sum(-1)  # (nb, nd, ni)
        ff = (f.real.square() + f.imag.square()).sum(-1)  # (nb, nd, nj)
        wf = torch.einsum("bdik,bdjk->bdij", w.conj(), f).real  # (nb, nd, ni, nj)
        dictionary._cache[key] = (basis_conj, w, f, ww, ff, wf)
    return dictionary._cache[key]


def _nearest(axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, np.float64)
    i = np.clip(np.searchsorted(axis, v), 0, axis.size - 1)
    i0 = np.clip(i - 1, 0, axis.size - 1)
    return np.where(np.abs(axis[i0] - v) <= np.abs(axis[i] - v), i0, i)


def consistency_residual(fingerprints: np.ndarray, dictionary: Dictionary, t1h2o: np.ndarray, ff: np.ndarray,
                         b1: np.ndarray, *, chunk: int = 4096,
                         device: str | torch.device | None = None) -> dict[str, np.ndarray]:
    """Best fit of the data with T1H2O, FF and B1 held: relative residual, Δf and T1fat.

    For the atom ``m = (1 − FF)·w + FF·f`` of every (Δf, T1fat) at the held B1 and T1H2O, the
    best complex amplitude explains ``|mᴴs|²/‖m‖²`` with ``mᴴs = (1 − FF)·wᴴs + FF·fᴴs`` and
    ``‖m‖² = (1 − FF)²‖w‖² + FF²‖f‖² + 2FF(1 − FF)·Re(wᴴf)``: the projections are one matrix
    product per B1 value, the norms come from the dictionary (cached).

    Parameters
    ----------
    fingerprints
        complex ``(n, frames)``.
    t1h2o, ff, b1
        ``(n,)``: the maps held (ms, fraction, a.u.); T1H2O and B1 are taken at the nearest grid value.

    Returns
    -------
    dict
        ``residual`` (``‖s − fit‖/‖s‖`` in the dictionary's subspace, as matching's), ``df`` (Hz)
        and ``t1fat`` (ms) of the best fit, float32 ``(n,)``; residual 1 for a zero or non-finite fingerprint.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    x = np.asarray(fingerprints)
    n = x.shape[0]
    g = dictionary.grid
    ib = _nearest(g.b1, np.asarray(b1, np.float64).reshape(-1))
    it = _nearest(g.t1h2o_ms, np.asarray(t1h2o, np.float64).reshape(-1))
    ffv = np.clip(np.asarray(ff, np.float64).reshape(-1), 0.0, 1.0)
    out = {"residual": np.ones(n, np.float32), "df": np.zeros(n, np.float32), "t1fat": np.zeros(n, np.float32)}
    finite = np.isfinite(x).all(-1)
    norm2 = np.where(finite, (np.abs(np.where(finite[:, None], x, 0)) ** 2).sum(-1), 0.0)
    todo = np.flatnonzero(finite & (norm2 > 0))
    basis_conj, W, F, WW, FF, WF = _compressed(dictionary, dev)
    nd, nj = W.shape[1], F.shape[2]
    with torch.no_grad():
        groups = [todo[ib[todo] == b] for b in np.unique(ib[todo])]
        for sel in (grp[a:a + chunk] for grp in groups for a in range(0, grp.size, chunk)):
            b = int(ib[sel[0]])
            s = torch.as_tensor(np.array(x[sel], dtype=np.complex64), device=dev) @ basis_conj  # (m, K)
            i = torch.as_tensor(it[sel], device=dev)
            pw = (W[b][:, i].permute(1, 0, 2).conj() * s[:, None, :]).sum(-1)  # (m, nd) wᴴs
            pf = (s @ F[b].reshape(nd * nj, -1).mH).reshape(-1, nd, nj)  # (m, nd, nj) fᴴs
            mix = torch.as_tensor(ffv[sel], device=dev, dtype=torch.float32)[:, None, None]
            ip = (1 - mix) * pw[:, :, None] + mix * pf
            mm = ((1 - mix) ** 2 * WW[b].T[i][:, :, None] + mix**2 * FF[b][None]
                  + 2 * mix * (1 - mix) * WF[b].permute(1, 0, 2)[i])  # (m, nd, nj)
            e = (ip.real.square() + ip.imag.square()) / mm.clamp_min(1e-30)
            best, arg = e.flatten(1).max(-1)
            rel = (1.0 - best.double().cpu().numpy() / norm2[sel]).clip(0.0, 1.0)
            out["residual"][sel] = np.sqrt(rel)
            arg = arg.cpu().numpy()
            out["df"][sel] = g.df_hz[arg // nj]
            out["t1fat"][sel] = g.t1fat_ms[arg % nj]
    return out


def data_consistency(fingerprints: np.ndarray, dictionary: Dictionary, network: Mapping[str, np.ndarray],
                     matched: Mapping[str, np.ndarray], sigma: np.ndarray, *,
                     level: float = CONTRADICTION_LEVEL,
                     device: str | torch.device | None = None) -> dict[str, np.ndarray]:
    """The data-consistency check of a network's maps against matching's.

    Parameters
    ----------
    fingerprints
        complex ``(n, frames)``.
    network, matched
        ``t1h2o``, ``ff``, ``b1`` ``(n,)`` of the network and of matching.
    sigma
        ``(n,)`` noise SD per frame (complex): matching's (:func:`~mrfrecon.uncertainty.fisher.noise_from_residual`).
    level
        Flag threshold of the statistic.

    Returns
    -------
    dict
        ``residual_net`` and ``residual_match`` (relative, float32), ``statistic`` (float32,
        ``(‖r_net‖² − ‖r_match‖²)/(σ²/2)``) and ``flag`` (uint8, :data:`CONTRADICTED` where the
        statistic exceeds ``level``), each ``(n,)``.
    """
    x = np.asarray(fingerprints)
    net = consistency_residual(x, dictionary, network["t1h2o"], network["ff"], network["b1"], device=device)
    ref = consistency_residual(x, dictionary, matched["t1h2o"], matched["ff"], matched["b1"], device=device)
    norm2 = (np.abs(np.nan_to_num(x.astype(np.complex128))) ** 2).sum(-1)
    sig2 = np.maximum(np.asarray(sigma, np.float64) ** 2, 1e-30 * np.maximum(norm2, 1e-30))
    stat = (net["residual"].astype(np.float64) ** 2 - ref["residual"].astype(np.float64) ** 2) * norm2 / (sig2 / 2)
    stat = np.where(np.isfinite(stat), stat, 0.0)
    return {"residual_net": net["residual"], "residual_match": ref["residual"], "statistic": stat.astype(np.float32),
            "flag": np.where(stat > level, CONTRADICTED, 0).astype(np.uint8)}


def combined_sd(ensemble_sd: np.ndarray, network: np.ndarray, matched: np.ndarray, matched_sd: np.ndarray,
                gate: np.ndarray | None = None) -> np.ndarray:
    """One SD per voxel: ``sqrt(SD_ens² + max((net − match)² − SD_match², 0))``.

    ``(net − match)²`` estimates ``err_net² + err_match²`` (independent errors), so the excess
    over matching's own variance estimates the network's squared error where the spread misses it
    (a bias the members share). ``gate`` (bool) keeps that term only where it is true (measured:
    gating it by the data-consistency flag lowered Spearman's ρ, docs/UNCERTAINTY.md). All arrays
    of one shape; float32."""
    d2 = (np.asarray(network, np.float64) - np.asarray(matched, np.float64)) ** 2
    excess = np.maximum(d2 - np.asarray(matched_sd, np.float64) ** 2, 0.0)
    if gate is not None:
        excess = excess * np.asarray(gate, bool)
    return np.sqrt(np.asarray(ensemble_sd, np.float64) ** 2 + excess).astype(np.float32)


def network_uncertainty(series: np.ndarray, foreground: np.ndarray, predictions: Sequence[Mapping[str, np.ndarray]], *,
                        dictionary: Dictionary | None = None, calibration: Calibration | None = None,
                        sigma: str | float = "residual", device: str | torch.device | None = None) -> dict[str, np.ndarray]:
    """The ensemble's maps with one SD per map, and (with a dictionary) the data-consistency check.

    Parameters
    ----------
    series
        complex ``(slices, frames, y, x)``: the scan the members predicted.
    foreground
        bool ``(slices, y, x)``.
    predictions
        One dict per member: map → ``(slices, y, x)`` (:func:`mrfrecon.inference.predict_scan`).
    dictionary
        With one: matching of the foreground, its Cramér–Rao SD, the data-consistency check and
        the combined SD (:func:`combined_sd`); without: the spread alone.
    calibration
        Scales: ``ensemble`` for the combined SD, ``ensemble-spread`` for the spread alone;
        ``matching`` for matching's SD inside the combination.

    Returns
    -------
    dict
        ``<map>`` (the mean), ``sd_<map>`` and ``flag_<map>`` per predicted map; with a dictionary
        also ``residual_net``, ``residual_match``, ``dc_statistic`` and ``sigma``. All ``(slices, y, x)``,
        0 outside the foreground.
    """
    from ..matching import match
    from .matched import scan_match_uncertainty

    fg = np.asarray(foreground, bool)
    ens = ensemble_stats(predictions)
    names = [k for k in predictions[0]]
    out: dict[str, np.ndarray] = {k: ens[k] for k in names}
    flags = {k: np.zeros(fg.shape, np.uint8) for k in names}
    sd = {k: ens[f"sd_{k}"] for k in names}
    method = "ensemble-spread"
    if dictionary is not None:
        fp = np.moveaxis(series, 1, -1)[fg]
        got = match(fp, dictionary)
        m = {}
        for k, v in got.items():
            full = np.zeros(fg.shape, v.dtype)
            full[fg] = v
            m[k] = full
        u = scan_match_uncertainty(series, fg, dictionary, m, sigma=sigma, calibration=calibration, device=device)
        held = {k: out[k][fg] if k in out else m[k][fg] for k in ("t1h2o", "ff", "b1")}
        level = float(calibration.info.get("contradiction_level", CONTRADICTION_LEVEL)) if calibration else CONTRADICTION_LEVEL
        dc = data_consistency(fp, dictionary, held, {k: m[k][fg] for k in held}, u["sigma"][fg], level=level,
                              device=device)
        bad = np.zeros(fg.shape, bool)
        bad[fg] = dc["flag"] > 0
        for k in names:
            if k in m:
                sd[k] = combined_sd(sd[k], out[k], m[k], u[f"sd_{k}"])
            flags[k][bad] |= CONTRADICTED
        for key, v in (("residual_net", dc["residual_net"]), ("residual_match", dc["residual_match"]),
                       ("dc_statistic", dc["statistic"])):
            full = np.zeros(fg.shape, np.float32)
            full[fg] = v
            out[key] = full
        out["sigma"] = u["sigma"]
        method = "ensemble"
    for k in names:
        scale = calibration.scale(method, k) if calibration is not None else 1.0
        out[f"sd_{k}"] = np.where(fg, sd[k] * np.float32(scale), 0.0).astype(np.float32)
        out[f"flag_{k}"] = flags[k]
    return out
