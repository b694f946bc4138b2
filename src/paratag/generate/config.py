"""Configuration of the sample generator: processes, mass grids, detector and pileup.

A :class:`GenerateConfig` lists :class:`ProcessConfig` entries; each entry with a
mass grid expands to one job (one ROOT file) per mass point. Built-in presets
(``charged_higgs``, ``charged_higgs_full``, ``xbb_jets``) are YAML files shipped in
``paratag/configs/generate_<name>.yaml`` and load with :meth:`GenerateConfig.preset`.
"""

from __future__ import annotations

import dataclasses
import zlib
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from paratag.conditions import format_value
from paratag.config import from_dict, load, read_mapping
from paratag.errors import ConfigError

__all__ = [
    "GROUP_LABELS",
    "DetectorConfig",
    "GenerateConfig",
    "Job",
    "PileupConfig",
    "ProcessConfig",
    "available_presets",
]

ProcessKind = Literal["charged_higgs", "ttbar", "tth", "wz", "zz", "dy", "xbb", "qcd", "custom"]
Group = Literal["signal", "ttX", "diboson", "nonprompt", "qcd", "xbb"]

#: Default integer label per group (0 is always the signal of a preset).
GROUP_LABELS: dict[str, int] = {
    "signal": 0,
    "xbb": 0,
    "ttX": 1,
    "diboson": 2,
    "nonprompt": 3,
    "qcd": 1,
}

#: Mass parameters each process kind needs in every grid point.
MASS_KEYS: dict[str, tuple[str, ...]] = {"charged_higgs": ("mHc", "mA"), "xbb": ("mX",)}


@dataclasses.dataclass(frozen=True)
class ProcessConfig:
    """One physics process, optionally on a grid of mass points.

    Attributes:
        name: dataset name stem; mass points append ``_mHc130_mA90`` style suffixes.
        kind: which built-in Pythia setup to use ("custom" uses only ``extra_settings``).
        group: analysis group stored in the fileset metadata.
        label: integer class label; ``None`` takes :data:`GROUP_LABELS` of the group.
        mass_points: grid points, e.g. ``[{mHc: 130, mA: 90}]``; one output file each.
        leptonic: force W/Z decays to e/mu to enrich multi-lepton final states
            (per-kind meaning in ``docs/generate.md``); the yield is corrected for it.
        pthat_min: minimum pT-hat in GeV (``PhaseSpace:pTHatMin``), e.g. 300 for boosted jets.
        xsec_pb: cross-section x BR to store (pb); ``None`` uses Pythia's ``sigmaGen``
            (for the charged Higgs a documented default, see ``processes.signal_xsec_pb``).
        events_scale: multiply the requested number of events for this process.
        extra_settings: additional Pythia ``readString`` lines, applied last.
    """

    name: str
    kind: ProcessKind
    group: Group
    label: int | None = None
    mass_points: tuple[dict[str, float], ...] = ()
    leptonic: bool = False
    pthat_min: float | None = None
    xsec_pb: float | None = None
    events_scale: float = 1.0
    extra_settings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").isalnum():
            raise ConfigError(f"ProcessConfig.name {self.name!r}: use letters, digits and '_'")
        needed = MASS_KEYS.get(self.kind, ())
        if needed and not self.mass_points:
            raise ConfigError(
                f"process {self.name!r} ({self.kind}) needs mass_points with keys {list(needed)}"
            )
        for point in self.mass_points:
            missing = [k for k in needed if k not in point]
            if missing:
                raise ConfigError(f"process {self.name!r}: mass point {point} lacks {missing}")
        if self.kind == "charged_higgs":
            for p in self.mass_points:
                if p["mHc"] <= p["mA"]:
                    raise ConfigError(
                        f"process {self.name!r}: mass point {p} needs mHc > mA for H+ -> W A"
                    )
                if p["mHc"] >= 170.0:
                    raise ConfigError(
                        f"process {self.name!r}: mHc={p['mHc']} must be below mt - mb (~170 GeV)"
                    )
        if self.events_scale <= 0:
            raise ConfigError(f"process {self.name!r}: events_scale must be > 0")


@dataclasses.dataclass(frozen=True)
class PileupConfig:
    """Minimum-bias pileup overlay.

    Attributes:
        enabled: overlay pileup at all.
        mu: mean number of pileup interactions (Poisson); stored as ``Pileup_nTrueInt``.
        beamspot_z_mm: Gaussian width of primary-vertex z positions (mm).
        mu_choices: a mixed-pileup sample: every event's mean μ is drawn uniformly
            from these values (``mu`` is then ignored), e.g. ``[0, 20, 40, 60]`` to
            train a tagger that must work at every pileup level.
        pool_size: minimum-bias events each job generates and then reuses, each reuse
            rotated in azimuth, mirrored in z at random and placed at a vertex of its
            own (a pre-mixing library, :mod:`paratag.generate.pileup`); 0 generates a
            fresh event for every pileup vertex (≈ 2 ms each). A job needing fewer
            events than the pool is unchanged by it.
    """

    enabled: bool = False
    mu: float = 30.0
    beamspot_z_mm: float = 35.0
    mu_choices: tuple[float, ...] = ()
    pool_size: int = 5000

    def __post_init__(self) -> None:
        if self.mu < 0 or self.beamspot_z_mm <= 0 or any(m < 0 for m in self.mu_choices):
            raise ConfigError(
                f"PileupConfig: mu and mu_choices must be >= 0 and beamspot_z_mm > 0, got {self}"
            )
        if self.pool_size < 0:
            raise ConfigError(
                f"PileupConfig.pool_size must be >= 0 (0: no reuse), got {self.pool_size}"
            )

    @property
    def active(self) -> bool:
        """Whether any event gets pileup."""
        return self.enabled and max(self.mu_choices or (self.mu,)) > 0

    def draw_mu(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The mean μ of ``n`` events (no draw, so no change of stream, at a fixed μ)."""
        if not self.enabled:
            return np.zeros(n)
        if self.mu_choices:
            return rng.choice(np.asarray(self.mu_choices, float), size=n)
        return np.full(n, self.mu)


#: clustering inputs of the jets: PUPPI-weighted candidates, or charged-hadron subtraction
JET_CONSTITUENTS = ("puppi", "chs")


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Parameters of the fast parametric detector simulation (see docs/generate.md).

    Attributes:
        charged_eta_max: tracker acceptance.
        calo_eta_max: calorimeter acceptance for neutrals.
        track_pt_min: minimum track pT (GeV).
        tracking_eff: hadron track efficiency.
        track_res: (a, b) of sigma(pT)/pT = a (+) b*pT.
        ecal_res: (stochastic, constant) of sigma(E)/E for photons and electrons.
        hcal_res: (stochastic, constant) of sigma(E)/E for neutral hadrons.
        photon_e_min: photon energy threshold (GeV).
        neutral_e_min: neutral-hadron energy threshold (GeV).
        d0_res_cm: (a, b) of sigma(d0) = a (+) b/pT in cm.
        dz_res_cm: (a, b) of sigma(dz) = a (+) b/pT in cm.
        muon_eff: muon identification efficiency (|eta| < 2.4, pT > muon_pt_min).
        electron_eff: electron identification efficiency (|eta| < 2.5, pT > electron_pt_min).
        muon_pt_min: minimum muon pT.
        electron_pt_min: minimum electron pT.
        tight_id_eff: probability that an identified lepton passes the tight ID.
        btag_wp: working point of the emulated ``btagDeepFlavB`` (DeepJet medium).
        btag_eff: (b, c, light) probabilities to pass ``btag_wp`` for |eta| < 2.5.
        sv_res_cm: (xy, z) resolution of secondary-vertex positions.
        sv_min_tracks: minimum reconstructed tracks for a secondary vertex.
        sv_min_sig: minimum 3D flight-distance significance.
        jet_pt_min: AK4 ``Jet`` threshold (GeV).
        fatjet_pt_min: AK8 ``FatJet`` threshold (GeV).
        puppi_neutral_min_pt: (a, b): with pileup, a neutral whose weighted pT is below
            a + b · n_PV GeV gets weight 0 (CMS PUPPI ``MinNeutralPt``/``Slope``).
        puppi_neutral_protect: (start, full): neutral weights are raised to at least
            (pT − start)/(full − start), so hard neutrals with no charged hard-vertex
            track nearby keep their energy (CMS PUPPI ``PtMaxNeutralsStartSlope``,
            ``PtMaxNeutrals``; full ≤ start turns it off).
        jet_constituents: ``puppi``: every PF candidate enters the AK4 and AK8 clustering
            and the soft drop with its four-momentum scaled by its PUPPI weight, weight-0
            candidates left out (Run-3 NanoAOD's ``Jet`` and ``FatJet`` are PUPPI jets);
            ``chs``: only charged pileup removed, neutrals at full weight (Run-2 AK4 CHS,
            with no offset correction). The two agree without pileup.
    """

    charged_eta_max: float = 2.5
    calo_eta_max: float = 4.7
    track_pt_min: float = 0.5
    tracking_eff: float = 0.95
    track_res: tuple[float, float] = (0.01, 1.0e-4)
    ecal_res: tuple[float, float] = (0.03, 0.005)
    hcal_res: tuple[float, float] = (1.0, 0.05)
    photon_e_min: float = 0.5
    neutral_e_min: float = 1.0
    d0_res_cm: tuple[float, float] = (0.001, 0.003)
    dz_res_cm: tuple[float, float] = (0.002, 0.005)
    muon_eff: float = 0.97
    electron_eff: float = 0.90
    muon_pt_min: float = 3.0
    electron_pt_min: float = 5.0
    tight_id_eff: float = 0.95
    btag_wp: float = 0.2783
    btag_eff: tuple[float, float, float] = (0.80, 0.15, 0.01)
    sv_res_cm: tuple[float, float] = (0.003, 0.005)
    sv_min_tracks: int = 2
    sv_min_sig: float = 3.0
    jet_pt_min: float = 15.0
    fatjet_pt_min: float = 170.0
    puppi_neutral_min_pt: tuple[float, float] = (0.2, 0.015)
    puppi_neutral_protect: tuple[float, float] = (20.0, 200.0)
    jet_constituents: str = "puppi"

    def __post_init__(self) -> None:
        if self.jet_constituents not in JET_CONSTITUENTS:
            raise ConfigError(
                f"DetectorConfig.jet_constituents must be one of {list(JET_CONSTITUENTS)}, "
                f"got {self.jet_constituents!r}"
            )
        for name in ("tracking_eff", "muon_eff", "electron_eff", "tight_id_eff"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"DetectorConfig.{name} must be in [0, 1], got {v}")
        if not all(0.0 <= e <= 1.0 for e in self.btag_eff):
            raise ConfigError(f"DetectorConfig.btag_eff must be in [0, 1], got {self.btag_eff}")
        if not 0.0 < self.btag_wp < 1.0:
            raise ConfigError(f"DetectorConfig.btag_wp must be in (0, 1), got {self.btag_wp}")
        if min(self.puppi_neutral_min_pt) < 0 or min(self.puppi_neutral_protect) < 0:
            raise ConfigError(
                "DetectorConfig.puppi_neutral_min_pt and puppi_neutral_protect must be >= 0, "
                f"got {self.puppi_neutral_min_pt} and {self.puppi_neutral_protect}"
            )


@dataclasses.dataclass(frozen=True)
class Job:
    """One output file: a process at one mass point, or one part of it.

    A dataset larger than ``GenerateConfig.max_events_per_file`` is split into
    ``n_parts`` jobs; part ``k`` numbers its events from ``first_event + 1`` so that
    event numbers stay unique across the dataset's files.
    """

    dataset: str
    process: ProcessConfig
    masses: dict[str, float]
    n_events: int
    seed: int
    part: int = 0
    n_parts: int = 1
    first_event: int = 0

    @property
    def file_stem(self) -> str:
        """Name of the output file without ``.root``: the dataset, plus ``_partK`` if split."""
        return self.dataset if self.n_parts == 1 else f"{self.dataset}_part{self.part}"


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """Everything ``paratag generate`` needs besides the output folder and event count.

    Attributes:
        processes: the processes to generate.
        ecm_gev: centre-of-mass energy.
        chunk_size: events simulated and written per chunk (bounds memory).
        pileup: pileup overlay settings.
        detector: parametric detector settings.
        run: value of the ``run`` branch.
        max_events_per_file: split a dataset with more events into several files
            (jobs), so that one large sample keeps every worker busy; the split depends
            on this value only, never on the number of workers (same seed, same events).
    """

    processes: tuple[ProcessConfig, ...]
    ecm_gev: float = 13600.0
    chunk_size: int = 250
    pileup: PileupConfig = dataclasses.field(default_factory=PileupConfig)
    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    run: int = 1
    max_events_per_file: int | None = None

    def __post_init__(self) -> None:
        if not self.processes:
            raise ConfigError("GenerateConfig.processes is empty; list at least one process")
        if self.chunk_size <= 0:
            raise ConfigError(f"GenerateConfig.chunk_size must be > 0, got {self.chunk_size}")
        if self.max_events_per_file is not None and self.max_events_per_file <= 0:
            raise ConfigError(
                f"GenerateConfig.max_events_per_file must be > 0 (or null: one file per "
                f"dataset), got {self.max_events_per_file}"
            )
        names = [j.dataset for j in self.jobs(1, 1)]  # one event: never split
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"GenerateConfig: duplicate dataset names {dupes}; rename processes")

    @classmethod
    def preset(cls, name: str) -> GenerateConfig:
        """Load a built-in preset by name (see :func:`available_presets`)."""
        if name not in available_presets():
            raise ConfigError(f"unknown generate preset {name!r}; available: {available_presets()}")
        ref = resources.files("paratag") / "configs" / f"generate_{name}.yaml"
        with resources.as_file(ref) as path:
            return load(cls, path)

    @classmethod
    def from_file(cls, path: str | Path) -> GenerateConfig:
        """Load a config from YAML/JSON, or a preset when ``path`` is a preset name."""
        p = Path(path)
        if not p.exists() and str(path) in available_presets():
            return cls.preset(str(path))
        data = read_mapping(p)
        return from_dict(cls, data, where=str(p))

    def jobs(self, n_events: int, seed: int) -> list[Job]:
        """Expand processes and mass grids into one job per output file.

        Part 0 of a dataset keeps the seed of an unsplit dataset; part ``k`` seeds
        from ``seed:dataset:k``.
        """
        out = []
        for proc in self.processes:
            points = proc.mass_points or ({},)
            for point in points:
                dataset = proc.name + "".join(f"_{k}{format_value(v)}" for k, v in point.items())
                n = max(1, round(n_events * proc.events_scale))
                cap = self.max_events_per_file or n
                n_parts = -(-n // cap)
                first = 0
                for part in range(n_parts):
                    size = n // n_parts + (part < n % n_parts)
                    key = f"{seed}:{dataset}" + (f":{part}" if part else "")
                    job_seed = (zlib.crc32(key.encode()) % 900_000_000) + 1
                    out.append(
                        Job(dataset, proc, dict(point), size, job_seed, part, n_parts, first)
                    )
                    first += size
        return out


def available_presets() -> list[str]:
    """Names of the generate presets shipped with paratag."""
    folder = resources.files("paratag") / "configs"
    names = [
        p.name[len("generate_") : -len(".yaml")]
        for p in folder.iterdir()
        if p.name.startswith("generate_") and p.name.endswith(".yaml")
    ]
    return sorted(names)
