"""Pythia8 settings for each built-in process and the cross-section bookkeeping.

Every process uses the same common block (13.6 TeV pp, particles with
c*tau0 > 10 mm stable as in CMS, quiet output, fixed seed). Forced decays
(``leptonic``) reduce Pythia's ``sigmaGen`` by the closed branching ratios
automatically; the charged-Higgs signal instead stores an explicit,
documented cross-section x BR (:func:`signal_xsec_pb`).
"""

from __future__ import annotations

from paratag.generate.config import Job

__all__ = [
    "BR_W_TO_EMU",
    "SIGMA_TTBAR_PB",
    "minbias_settings",
    "pythia_settings",
    "signal_xsec_pb",
]

#: sigma(pp -> tt) at 13.6 TeV, NNLO+NNLL (top++ 2.0, mt = 172.5 GeV), in pb.
SIGMA_TTBAR_PB = 923.6
#: Assumed B(t -> b H+) used for the signal normalisation.
BR_T_TO_BHC = 0.01
#: Assumed B(A -> mu mu) for a light pseudoscalar (B(H+ -> W A) = 1 is assumed).
BR_A_TO_MUMU = 3.0e-4
#: B(W -> e nu) + B(W -> mu nu), PDG.
BR_W_TO_EMU = 0.1071 + 0.1063

_W_ALL = "1 2 3 4 5 11 13 15"  # every W decay channel contains one of these


def common_settings(ecm_gev: float, seed: int) -> list[str]:
    """Settings shared by every generator instance."""
    return [
        f"Beams:eCM = {ecm_gev}",
        "Print:quiet = on",
        "Next:numberCount = 0",
        "ParticleDecays:limitTau0 = on",
        "ParticleDecays:tau0Max = 10",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
    ]


def _charged_higgs(mhc: float, ma: float, conjugate: bool, leptonic: bool) -> list[str]:
    """T -> b H+ (H+ -> W+(*) A, A -> mu mu), tbar -> b W-; ``conjugate`` swaps the charges."""
    higgs_side, w_side = ("onNegIfAny", "onPosIfAny") if conjugate else ("onPosIfAny", "onNegIfAny")
    lines = [
        "Top:gg2ttbar = on",
        "Top:qqbar2ttbar = on",
        "Higgs:useBSM = on",
        f"37:m0 = {mhc}",
        f"36:m0 = {ma}",
        "6:onMode = off",
        f"6:{higgs_side} = 37",
        f"6:{w_side} = 24",
        "37:onMode = off",
        "37:addChannel = 1 1.0 100 24 36",
        "37:doForceWidth = on",
        "37:mWidth = 0.01",
        "36:onMode = off",
        "36:onIfMatch = 13 -13",
    ]
    if leptonic:
        # the W from the SM top decays to e/mu; the W(*) from H+ stays free
        h_w, t_w = ("onNegIfAny", "onPosIfAny") if conjugate else ("onPosIfAny", "onNegIfAny")
        lines += ["24:onMode = off", f"24:{h_w} = {_W_ALL}", f"24:{t_w} = 11 13"]
    return lines


def _process_lines(job: Job, conjugate: bool) -> list[str]:
    proc = job.process
    lep = proc.leptonic
    z_ll = ["23:onMode = off", "23:onIfAny = 11 13"]
    w_lv = ["24:onMode = off", "24:onIfAny = 11 13"]
    if proc.kind == "charged_higgs":
        return _charged_higgs(job.masses["mHc"], job.masses["mA"], conjugate, lep)
    if proc.kind == "ttbar":
        return ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"] + (w_lv if lep else [])
    if proc.kind == "tth":
        lines = ["HiggsSM:gg2Httbar = on", "HiggsSM:qqbar2Httbar = on"]
        return lines + (["25:onMode = off", "25:onIfAny = 15 23 24"] + w_lv if lep else [])
    if proc.kind == "wz":
        return ["WeakDoubleBoson:ffbar2ZW = on"] + (z_ll + w_lv if lep else [])
    if proc.kind == "zz":
        return ["WeakDoubleBoson:ffbar2gmZgmZ = on", "WeakZ0:gmZmode = 2"] + (z_ll if lep else [])
    if proc.kind == "dy":
        return ["WeakSingleBoson:ffbar2gmZ = on", "PhaseSpace:mHatMin = 50"] + z_ll
    if proc.kind == "xbb":
        return [
            "HiggsSM:gg2Hg(l:t) = on",
            "HiggsSM:qg2Hq(l:t) = on",
            "HiggsSM:qqbar2Hg(l:t) = on",
            f"25:m0 = {job.masses['mX']}",
            "25:doForceWidth = on",
            "25:mWidth = 0.01",
            "25:onMode = off",
            "25:onIfMatch = 5 -5",
        ]
    if proc.kind == "qcd":
        return ["HardQCD:all = on"]
    return []  # custom: extra_settings only


def pythia_settings(job: Job, ecm_gev: float, conjugate: bool = False) -> list[str]:
    """All ``readString`` lines for one job (``conjugate``: the charge-swapped signal half)."""
    lines = common_settings(ecm_gev, job.seed + (1 if conjugate else 0))
    lines += _process_lines(job, conjugate)
    pthat = job.process.pthat_min
    if pthat is None and job.process.kind in ("xbb", "qcd"):
        pthat = 300.0
    if pthat is not None:
        lines.append(f"PhaseSpace:pTHatMin = {pthat}")
    return lines + list(job.process.extra_settings)


def minbias_settings(ecm_gev: float, seed: int) -> list[str]:
    """Settings of the minimum-bias (``SoftQCD:inelastic``) pileup generator."""
    return [*common_settings(ecm_gev, seed), "SoftQCD:inelastic = on"]


def signal_xsec_pb(leptonic: bool) -> float:
    """Charged-Higgs cross-section x BR in pb.

    sigma(tt) * 2 * B(t -> b H+) * B(H+ -> W A) * B(A -> mu mu), times
    B(W -> e/mu nu) when the SM-top W is forced to leptons. The factor 2 counts
    both charge assignments; B(t -> b W) ~ 1 for the other top.
    """
    xsec = SIGMA_TTBAR_PB * 2.0 * BR_T_TO_BHC * 1.0 * BR_A_TO_MUMU
    return xsec * (BR_W_TO_EMU if leptonic else 1.0)
