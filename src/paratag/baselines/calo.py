"""Electron/photon images for the ResNet-15 baseline: ML4SCI files and a fast calorimeter.

- :func:`load_ml4sci_h5` reads the ML4SCI electron/photon HDF5 files (datasets ``X`` and ``y``);
- :func:`simulate_egamma` is the embedded default: a fast simulation of single electrons
  (label 1) and photons (label 0) in a CMS-like PbWO4 barrel (see ``docs/baselines.md``).

Both give ``X`` of shape (N, 32, 32, 2), channels last, and ``y`` labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from paratag.errors import ConfigError, InputFileError

__all__ = [
    "CaloSimConfig",
    "load_ml4sci_h5",
    "simulate_egamma",
    "to_channels_first",
    "write_ml4sci_h5",
]

_C_M_PER_NS = 0.299792458


# ---------------------------------------------------------------------------------------------
# ML4SCI HDF5 layout
# ---------------------------------------------------------------------------------------------


def write_ml4sci_h5(path: str | Path, X: np.ndarray, y: np.ndarray) -> Path:
    """Write images and labels in the ML4SCI layout (``X`` (N, H, W, C) float32, ``y`` (N,))."""
    import h5py

    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if X.ndim != 4 or X.shape[1] != X.shape[2] or len(y) != len(X):
        raise ConfigError(
            f"write_ml4sci_h5: need X (N, H, H, C) and y (N,), got {X.shape}, {y.shape}"
        )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(p, "w") as f:
        f.create_dataset("X", data=X, compression="gzip", compression_opts=4)
        f.create_dataset("y", data=y)
    return p


def load_ml4sci_h5(
    paths: str | Path | Sequence[str | Path], max_events: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one or more ML4SCI electron/photon HDF5 files.

    Args:
        paths: file(s) with datasets ``X`` (N, H, H, C) and ``y`` (N,), e.g. the photon and the
            electron file of the ML4SCI common task.
        max_events: read at most this many events from each file.

    Returns:
        ``(X, y)``: images (N, H, H, C) float32 channels last, labels (N,) int64.

    Raises:
        InputFileError: a file is missing, not HDF5, or not in this layout.
    """
    import h5py

    if isinstance(paths, str | Path):
        paths = [paths]
    xs, ys = [], []
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise InputFileError(str(p), "file does not exist")
        try:
            f = h5py.File(p, "r")
        except OSError as exc:
            raise InputFileError(str(p), f"not a readable HDF5 file ({exc})") from exc
        with f:
            missing = [k for k in ("X", "y") if k not in f]
            if missing:
                raise InputFileError(
                    str(p),
                    f"dataset(s) {missing} missing; found {sorted(f.keys())}",
                    "expected the ML4SCI layout: 'X' (N, 32, 32, 2) images and 'y' (N,) labels",
                )
            xd, yd = f["X"], f["y"]
            if xd.ndim != 4 or xd.shape[1] != xd.shape[2] or yd.ndim != 1 or len(yd) != len(xd):
                raise InputFileError(
                    str(p),
                    f"'X' has shape {xd.shape} and 'y' has shape {yd.shape}",
                    "expected 'X' (N, H, H, C) channels last and 'y' (N,) with the same N",
                )
            stop = len(xd) if max_events is None else min(max_events, len(xd))
            xs.append(np.asarray(xd[:stop], dtype=np.float32))
            ys.append(np.asarray(yd[:stop]))
    if len({x.shape[1:] for x in xs}) != 1:
        raise InputFileError(
            str(paths[0]), f"files have different image shapes {[x.shape for x in xs]}"
        )
    X = np.concatenate(xs)
    if not np.all(np.isfinite(X)):
        raise InputFileError(str(paths[0]), "'X' contains NaN or inf values")
    return X, np.concatenate(ys).astype(np.int64)


def to_channels_first(X: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W) contiguous float32, the layout ResNet-15 takes."""
    return np.ascontiguousarray(np.transpose(np.asarray(X, dtype=np.float32), (0, 3, 1, 2)))


# ---------------------------------------------------------------------------------------------
# Fast electron/photon calorimeter simulation
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CaloSimConfig:
    """Fast simulation of single e/gamma showers on a CMS-like PbWO4 crystal grid.

    Attributes:
        pt_range: generated pT range in GeV (uniform).
        eta_range: generated pseudorapidity range (uniform; barrel by default).
        grid: crystals per side of the output image.
        crystal_size_cm: crystal front-face size (CMS barrel: 2.2 cm, 0.0174 in eta and phi).
        moliere_radius_cm: Moliere radius of the calorimeter material (PbWO4: 2.19 cm).
        core_fraction: energy fraction in the core of the two-component radial profile.
        core_radius_rm: core radius in Moliere radii.
        tail_radius_rm: tail (halo) radius in Moliere radii.
        b_field_t: solenoid field in tesla.
        calo_radius_m: radius of the calorimeter front face.
        tracker_radius_m: outer radius of the tracker material.
        tracker_x0: tracker material at eta = 0 in radiation lengths (scales with cosh(eta)).
        material_layers: number of thin layers the material is lumped into.
        conversion_probability: probability that a photon converts before the calorimeter.
        stochastic: stochastic term a of the energy resolution a/sqrt(E) (+) c.
        constant: constant term c of the energy resolution.
        noise_gev: Gaussian electronic noise per crystal.
        threshold_gev: readout threshold; crystals below it read zero energy and zero time.
        time_noise_ns_gev: noise term of the time resolution (a/E (+) c, in ns).
        time_constant_ns: constant term of the time resolution.
        spots_per_shower: energy spots sampled per shower (sets the lateral fluctuations).
    """

    pt_range: tuple[float, float] = (40.0, 60.0)
    eta_range: tuple[float, float] = (-1.4, 1.4)
    grid: int = 32
    crystal_size_cm: float = 2.2
    moliere_radius_cm: float = 2.19
    core_fraction: float = 0.9
    core_radius_rm: float = 0.3
    tail_radius_rm: float = 1.5
    b_field_t: float = 3.8
    calo_radius_m: float = 1.29
    tracker_radius_m: float = 1.1
    tracker_x0: float = 0.6
    material_layers: int = 4
    conversion_probability: float = 0.3
    stochastic: float = 0.028
    constant: float = 0.003
    noise_gev: float = 0.04
    threshold_gev: float = 0.1
    time_noise_ns_gev: float = 1.0
    time_constant_ns: float = 0.07
    spots_per_shower: int = 100

    def __post_init__(self) -> None:
        lo, hi = self.pt_range
        if not 0 < lo <= hi:
            raise ConfigError(
                f"CaloSimConfig.pt_range must satisfy 0 < min <= max, got {self.pt_range}"
            )
        if self.eta_range[0] > self.eta_range[1]:
            raise ConfigError(f"CaloSimConfig.eta_range must be (min, max), got {self.eta_range}")
        if not 0.0 <= self.conversion_probability <= 1.0:
            raise ConfigError(
                f"CaloSimConfig.conversion_probability must be in [0, 1], got {self.conversion_probability}"
            )
        if self.grid < 4 or self.spots_per_shower < 1 or self.material_layers < 1:
            raise ConfigError(
                "CaloSimConfig: grid >= 4, spots_per_shower >= 1, material_layers >= 1"
            )
        if self.tracker_radius_m >= self.calo_radius_m:
            raise ConfigError("CaloSimConfig.tracker_radius_m must be below calo_radius_m")


def _propagate(y, s, kappa, dr, path):
    """Advance tracks by ``dr`` in radius (small-angle helix): offset, slope, extra path length."""
    path = path + 0.5 * (s**2 * dr - s * kappa * dr**2 + kappa**2 * dr**3 / 3.0)
    return y + s * dr - 0.5 * kappa * dr**2, s - kappa * dr, path


def _showers_for_batch(
    n: int, is_electron: np.ndarray, cfg: CaloSimConfig, rng: np.random.Generator
):
    """Impact points (in metres along phi at the calo face), energies and path excess of all showers."""
    R = cfg.calo_radius_m
    pt = rng.uniform(*cfg.pt_range, n)
    eta = rng.uniform(*cfg.eta_range, n)
    cosh = np.cosh(eta)
    bend = 0.3 * cfg.b_field_t  # curvature = bend * q / pT  [1/m]
    evt, y_at_calo, e_pt, path = [], [], [], []

    # Electrons: bend in the field and radiate bremsstrahlung in thin material layers.
    ie = np.flatnonzero(is_electron)
    q = rng.choice([-1.0, 1.0], ie.size)
    y = np.zeros(ie.size)
    s = np.zeros(ie.size)
    ln = np.zeros(ie.size)
    pte = pt[ie].copy()
    r_prev = 0.0
    t_layer = cfg.tracker_x0 * cosh[ie] / cfg.material_layers
    for k in range(cfg.material_layers):
        r_k = cfg.tracker_radius_m * (k + 0.5) / cfg.material_layers
        y, s, ln = _propagate(y, s, q * bend / pte, r_k - r_prev, ln)
        r_prev = r_k
        # Bethe-Heitler: -ln(E'/E) ~ Gamma(t / ln 2, 1) after t radiation lengths.
        z = np.exp(-rng.gamma(t_layer / np.log(2.0)))
        evt.append(ie)
        y_at_calo.append(y + s * (R - r_k))
        e_pt.append(pte * (1.0 - z))
        path.append(ln + 0.5 * s**2 * (R - r_k))
        pte = pte * z
    y, s, ln = _propagate(y, s, q * bend / np.maximum(pte, 1e-3), R - r_prev, ln)
    evt.append(ie)
    y_at_calo.append(y)
    e_pt.append(pte)
    path.append(ln)

    # Photons: unconverted ones shower at the nominal impact point, converted ones split into
    # an e+e- pair bending in opposite directions from the conversion radius.
    ig = np.flatnonzero(~is_electron)
    conv = rng.random(ig.size) < cfg.conversion_probability
    iu, ic = ig[~conv], ig[conv]
    evt.append(iu)
    y_at_calo.append(np.zeros(iu.size))
    e_pt.append(pt[iu])
    path.append(np.zeros(iu.size))
    r_c = rng.uniform(0.0, cfg.tracker_radius_m, ic.size)
    x = rng.uniform(0.0, 1.0, ic.size)
    for frac, sign in ((x, 1.0), (1.0 - x, -1.0)):
        leg_pt = np.maximum(pt[ic] * frac, 1e-3)
        yl, _, ll = _propagate(
            np.zeros(ic.size), np.zeros(ic.size), sign * bend / leg_pt, R - r_c, 0.0
        )
        # Legs too soft to reach the calorimeter (2 * radius of curvature < remaining path) curl up.
        reaches = 2.0 * leg_pt / bend > (R - r_c)
        evt.append(ic[reaches])
        y_at_calo.append(yl[reaches])
        e_pt.append(leg_pt[reaches])
        path.append(ll[reaches])

    evt_a = np.concatenate(evt)
    energy = np.concatenate(e_pt) * cosh[evt_a]
    dt_ns = np.concatenate(path) * cosh[evt_a] / _C_M_PER_NS
    # Offset along phi at the calo face, in crystal units.
    u_phi = np.concatenate(y_at_calo) * 100.0 / cfg.crystal_size_cm
    return evt_a, u_phi, energy, dt_ns


def _simulate_batch(
    is_electron: np.ndarray, cfg: CaloSimConfig, rng: np.random.Generator
) -> np.ndarray:
    n = is_electron.size
    G = cfg.grid
    C = 2 * G  # canvas, cropped around the hottest crystal at the end
    evt, u_phi, energy, dt = _showers_for_batch(n, is_electron, cfg, rng)
    # Energy resolution, applied per shower (the crystal-level fluctuations come from the spots).
    sigma = np.sqrt(cfg.stochastic**2 / np.maximum(energy, 1e-3) + cfg.constant**2)
    energy = energy * np.clip(1.0 + sigma * rng.standard_normal(energy.size), 0.0, None)
    # Impact point of the primary: canvas centre plus a random offset within the crystal.
    off = rng.uniform(-0.5, 0.5, (n, 2))
    c_eta = C / 2 + off[evt, 0]
    c_phi = C / 2 + off[evt, 1] + u_phi
    # Two-component radial profile f(r) ~ 2 r R^2 / (r^2 + R^2)^2 in Moliere radii.
    S, K = energy.size, cfg.spots_per_shower
    rm = cfg.moliere_radius_cm / cfg.crystal_size_cm
    radius = np.where(
        rng.random((S, K)) < cfg.core_fraction, cfg.core_radius_rm, cfg.tail_radius_rm
    )
    u = rng.uniform(0.0, 0.995, (S, K))
    r = radius * rm * np.sqrt(u / (1.0 - u))
    ang = rng.uniform(0.0, 2.0 * np.pi, (S, K))
    ieta = np.floor(c_eta[:, None] + r * np.cos(ang)).astype(np.int64)
    iphi = np.floor(c_phi[:, None] + r * np.sin(ang)).astype(np.int64)
    inside = (ieta >= 0) & (ieta < C) & (iphi >= 0) & (iphi < C)
    cell = (np.broadcast_to(evt[:, None], (S, K)) * C + ieta) * C + iphi
    w = np.broadcast_to((energy / K)[:, None], (S, K))
    t = np.broadcast_to(dt[:, None], (S, K))
    e_img: np.ndarray = np.bincount(cell[inside], w[inside], minlength=n * C * C).reshape(n, C, C)
    et_img = np.bincount(cell[inside], (w * t)[inside], minlength=n * C * C).reshape(n, C, C)
    t_img = np.divide(et_img, e_img, out=np.zeros_like(e_img), where=e_img > 0)
    # Noise, timing resolution, readout threshold.
    e_img = e_img + cfg.noise_gev * rng.standard_normal(e_img.shape)
    sig_t = np.sqrt(
        (cfg.time_noise_ns_gev / np.maximum(e_img, 1e-3)) ** 2 + cfg.time_constant_ns**2
    )
    t_img = t_img + sig_t * rng.standard_normal(t_img.shape)
    read = e_img >= cfg.threshold_gev
    e_img = np.where(read, e_img, 0.0)
    t_img = np.where(read, t_img, 0.0)
    # Crop the G x G window with the hottest crystal at (G/2, G/2), clamped to the canvas.
    flat = e_img.reshape(n, -1).argmax(axis=1)
    start_eta = np.clip(flat // C - G // 2, 0, C - G)
    start_phi = np.clip(flat % C - G // 2, 0, C - G)
    rows = start_eta[:, None, None] + np.arange(G)[None, :, None]
    cols = start_phi[:, None, None] + np.arange(G)[None, None, :]
    idx = np.arange(n)[:, None, None]
    return np.stack([e_img[idx, rows, cols], t_img[idx, rows, cols]], axis=-1).astype(np.float32)


def simulate_egamma(
    n_per_class: int,
    config: CaloSimConfig | None = None,
    seed: int = 0,
    batch_size: int = 2000,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate balanced, shuffled single-electron and single-photon crystal images.

    Args:
        n_per_class: events per class.
        config: detector and generation settings (defaults: CMS-like barrel, pT 40-60 GeV).
        seed: random seed; the same seed gives the same images.
        batch_size: events simulated at once (bounds memory).

    Returns:
        ``(X, y)`` in the ML4SCI layout: X (2 n, grid, grid, 2) float32 with channel 0 the
        crystal energy in GeV and channel 1 the time in ns; y (2 n,) int64, 1 = electron.
    """
    cfg = config or CaloSimConfig()
    if n_per_class <= 0:
        raise ConfigError(f"simulate_egamma: n_per_class must be > 0, got {n_per_class}")
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array([0, 1], dtype=np.int64), n_per_class)
    rng.shuffle(y)
    parts = [
        _simulate_batch(y[i : i + batch_size] == 1, cfg, rng) for i in range(0, y.size, batch_size)
    ]
    return np.concatenate(parts), y
