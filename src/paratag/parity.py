"""PyTorch against onnxruntime on the same inputs: the export's parity checks.

:func:`parity_inputs` builds real model inputs from events; :func:`check_parity`
compares ``model.onnx`` with the PyTorch model at several batch sizes and particle
counts (both dynamic axes), :func:`check_hypotheses_parity` compares
``model_hypotheses.onnx`` with ``forward`` called once per hypothesis. Sessions
come from :func:`paratag.scoring.onnx_session`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paratag.errors import InputFileError
from paratag.preprocess import Preprocess, split_input_name
from paratag.presets import Preset, load_preset
from paratag.scoring import onnx_session

__all__ = [
    "ParityReport",
    "check_hypotheses_parity",
    "check_parity",
    "min_particles",
    "parity_inputs",
]


def _torch() -> Any:
    import torch

    return torch


def min_particles(model: Any) -> int:
    """Smallest particle count the exported graph accepts (largest EdgeConv ``k`` + 1)."""
    ks = [int(m.k) for m in model.modules() if hasattr(m, "k") and hasattr(m, "linears")]
    return max(ks, default=0) + 1


@dataclass(frozen=True)
class ParityReport:
    """PyTorch vs onnxruntime agreement.

    Attributes:
        cases: ``(batch size, particles, max |Δ|)`` per compared configuration.
        tolerance: the largest allowed difference.
    """

    cases: tuple[tuple[int, int, float], ...]
    tolerance: float

    @property
    def max_abs_diff(self) -> float:
        """Largest difference over all cases."""
        return max((c[2] for c in self.cases), default=0.0)

    @property
    def ok(self) -> bool:
        """Whether every case is within tolerance."""
        return self.max_abs_diff <= self.tolerance

    def __str__(self) -> str:
        rows = ", ".join(f"N={n} P={p}: {d:.2e}" for n, p, d in self.cases)
        return f"max |torch - onnxruntime| = {self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}; {rows})"


def parity_inputs(
    events: str | Path | Any, preset: str | Preset, pp: Preprocess, seed: int = 0
) -> dict[str, np.ndarray]:
    """Model inputs from real events (a NanoAOD/PFNano path or NanoEvents) for ``pp``.

    Graphs without constituents are dropped; the condition (if any) is drawn
    standard-normal (it is already the normalised input).
    """
    from paratag.inputs import build_inputs

    if isinstance(events, str | Path):  # else: NanoEvents
        from paratag.runner import check_file

        path = str(events)
        check_file(path)
        from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

        events = NanoEventsFactory.from_root(
            {path: "Events"},
            schemaclass=NanoAODSchema,
            mode="virtual",
            metadata={"filename": path},
        ).events()
    p = load_preset(preset)
    inputs = build_inputs(events, p, "")
    first = p.clouds[0].name
    keep = inputs.clouds[first].counts > 0
    if not keep.any():
        raise InputFileError(
            str(getattr(events, "metadata", {}).get("filename", "<events>")),
            "no object with constituents to compare on",
            "use a file with jets that have PF candidates",
        )
    out: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    for name in pp.input_names:
        if name == "condition":
            out[name] = rng.standard_normal((int(keep.sum()), len(pp.condition_names))).astype(
                np.float32
            )
            continue
        cloud, kind = split_input_name(name, first)
        out[name] = np.ascontiguousarray(getattr(inputs.clouds[cloud], kind)[keep])
    return out


def check_parity(
    model: Any,
    onnx_path: str | Path,
    inputs: Mapping[str, np.ndarray],
    *,
    batch_sizes: Sequence[int] = (1, 5, 24),
    tolerance: float = 1e-4,
) -> ParityReport:
    """Compare PyTorch and onnxruntime softmax outputs on ``inputs``.

    Every batch size is tried at the full particle count of the first cloud
    and at a smaller one (the inputs truncated, which keeps them valid since
    constituents are sorted), so both dynamic axes are exercised. ``inputs`` are keyed
    by the ONNX input names; PyTorch gets them by position (:func:`paratag.models.positional`),
    so a second cloud named after the preset (``vtx_features``) reaches ``sv_features``.
    """
    torch = _torch()
    from paratag.models import positional

    names = list(inputs)
    n_rows = len(next(iter(inputs.values())))
    p_full = inputs["mask"].shape[2]
    p_small = max(min_particles(model), p_full // 2)
    counts = [p_full] if p_small >= p_full else [p_full, p_small]
    session = onnx_session(onnx_path, threads=1)
    order = [i.name for i in session.get_inputs()]  # positions map them to the model's keywords
    call = positional(model)
    was_training, threads = model.training, torch.get_num_threads()
    model.eval()
    torch.set_num_threads(1)  # tiny batches: one thread is fastest and does not oversubscribe
    cases = []
    try:
        for batch in batch_sizes:
            rows = np.resize(np.arange(n_rows), batch)  # repeats rows when there are few
            for particles in counts:
                feed = {}
                for n in names:
                    arr = inputs[n][rows]
                    if n in ("points", "features", "mask"):
                        arr = arr[..., :particles]
                    feed[n] = np.ascontiguousarray(arr)
                got = session.run(["softmax"], feed)[0]
                with torch.no_grad():
                    ref = torch.softmax(call(*(torch.from_numpy(feed[n]) for n in order)), 1)
                cases.append((int(batch), int(particles), float(np.abs(got - ref.numpy()).max())))
    finally:
        model.train(was_training)
        torch.set_num_threads(threads)
    return ParityReport(tuple(cases), tolerance)


def check_hypotheses_parity(
    model: Any,
    onnx_path: str | Path,
    inputs: Mapping[str, np.ndarray],
    *,
    n_hypotheses: Sequence[int] = (1, 4),
    batch_sizes: Sequence[int] = (1, 5),
    tolerance: float = 1e-4,
) -> ParityReport:
    """Compare a ``model_hypotheses.onnx`` with PyTorch ``forward`` called once per hypothesis.

    Cases are reported as ``(batch size, particles, max |Δ|)`` like
    :func:`check_parity`; every batch size is tried with each hypothesis count.
    """
    torch = _torch()
    session = onnx_session(onnx_path, threads=1)
    n_rows = len(inputs["mask"])
    k = inputs["condition"].shape[1]
    rng = np.random.default_rng(1)
    was_training = model.training
    model.eval()
    cases = []
    try:
        for h in n_hypotheses:
            conds = rng.standard_normal((h, k)).astype(np.float32)
            for batch in batch_sizes:
                rows = np.resize(np.arange(n_rows), batch)
                feed = {
                    n: np.ascontiguousarray(inputs[n][rows]) for n in ("points", "features", "mask")
                }
                got = session.run(["softmax"], {**feed, "condition": conds})[0]
                with torch.no_grad():
                    t = {n: torch.from_numpy(v) for n, v in feed.items()}
                    per_hypothesis = [
                        torch.softmax(model(**t, condition=torch.from_numpy(c).expand(batch, k)), 1)
                        for c in conds
                    ]
                    ref = torch.stack(per_hypothesis, dim=1).numpy()
                diff = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
                cases.append((int(batch), int(feed["mask"].shape[2]), diff))
    finally:
        model.train(was_training)
    return ParityReport(tuple(cases), tolerance)
