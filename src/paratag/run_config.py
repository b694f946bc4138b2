"""The train YAML as data: :class:`TrainConfig` and the sections of its schedule and loss.

Frozen dataclasses only (no torch): the training application
(:mod:`paratag.training`) runs them, the evaluation reads a run's ``config.yaml``
with :func:`load_train_config` without importing it. ``paratag.training.loop``,
``.schedule``, ``.losses`` and ``.config`` re-export these names.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from paratag.conditions import GridConfig
from paratag.config import ModelConfig, from_dict, read_mapping
from paratag.data.selection import DataConfig
from paratag.errors import ConfigError

__all__ = [
    "M_W",
    "CurriculumPhase",
    "FitConfig",
    "LossConfig",
    "RatioConfig",
    "Stage1Config",
    "Stage2Config",
    "Stage3Config",
    "TrainConfig",
    "load_train_config",
]


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Optimisation settings of one training (one stage or one stage-1 point).

    Attributes:
        epochs: number of epochs.
        batch_size: global batch size (used by whoever builds the loaders).
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: learning rate.
        weight_decay: weight decay (decoupled for AdamW).
        momentum: SGD momentum.
        scheduler: ``none``, ``cosine`` (annealed over ``epochs``) or ``step``.
        min_lr: final learning rate of the cosine schedule.
        step_size, gamma: step schedule.
        grad_clip: clip the gradient norm (None: off).
        patience: early-stopping patience in epochs (None: off).
        monitor: ``val_loss`` (lower is better) or ``val_auc`` (higher is better).
        min_delta: minimum improvement that resets the patience.
        amp: mixed precision on CUDA: float16 autocast with a gradient scaler (ignored on
            CPU).
        cpu_amp: bfloat16 autocast on CPU (ignored on CUDA). About 2x faster per step on
            CPUs with native bfloat16 (AVX512-BF16, AMX); slower where it is emulated, so
            it is off by default and switched off, with a warning, where oneDNN lacks it.
        compile: ``torch.compile`` the model.
    """

    epochs: int = 10
    batch_size: int = 512
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: Literal["none", "cosine", "step"] = "none"
    min_lr: float = 0.0
    step_size: int = 10
    gamma: float = 0.1
    grad_clip: float | None = None
    patience: int | None = None
    monitor: Literal["val_loss", "val_auc"] = "val_loss"
    min_delta: float = 0.0
    amp: bool = True
    cpu_amp: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(
                f"epochs ({self.epochs}) must be >= 0, batch_size ({self.batch_size}) >= 1 and lr ({self.lr}) > 0"
            )


@dataclasses.dataclass(frozen=True)
class CurriculumPhase:
    """``epochs`` epochs on the ``masses`` subset (easy, medium or all)."""

    epochs: int
    masses: Literal["easy", "medium", "all"] = "all"

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"stage3.curriculum: epochs must be >= 0, got {self.epochs}")


@dataclasses.dataclass(frozen=True)
class Stage1Config(FitConfig):
    """Per-mass pre-training (a :class:`FitConfig` plus the stage switches).

    Attributes:
        enabled: run this stage.
        points: subset of training points to pre-train (None: all).
    """

    epochs: int = 20
    batch_size: int = 512
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    enabled: bool = True
    points: tuple[tuple[float, ...], ...] | None = None


@dataclasses.dataclass(frozen=True)
class Stage2Config:
    """Weight averaging.

    Attributes:
        enabled: run this stage.
        averaging: ``uniform`` or ``auc_weighted``.
        attention_output_identity: also zero the attention output projections.
    """

    enabled: bool = True
    averaging: Literal["uniform", "auc_weighted"] = "uniform"
    attention_output_identity: bool = False


_DEFAULT_CURRICULUM = (
    CurriculumPhase(10, "easy"),
    CurriculumPhase(20, "medium"),
    CurriculumPhase(20, "all"),
)


@dataclasses.dataclass(frozen=True)
class Stage3Config(FitConfig):
    """Joint fine-tuning (a :class:`FitConfig` plus curriculum and switches).

    Attributes:
        enabled: run this stage.
        curriculum: phases in order; empty or ``curriculum_enabled: false`` trains on all points.
        curriculum_enabled: use the curriculum.
    """

    epochs: int = 50
    batch_size: int = 1024
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.01
    scheduler: Literal["none", "cosine", "step"] = "cosine"
    patience: int | None = 10
    enabled: bool = True
    curriculum: tuple[CurriculumPhase, ...] = _DEFAULT_CURRICULUM
    curriculum_enabled: bool = True


@dataclasses.dataclass(frozen=True)
class RatioConfig(FitConfig):
    """The hypothesis ratio after stage 3 (:mod:`paratag.models.ratio`): a :class:`FitConfig` plus.

    Attributes:
        enabled: train it; the delivered model is then ``ratio/model.pt``.
        vary: the condition parameters it learns (those the backgrounds do not
            depend on); its partners share every other parameter.
        scale: factor on its log-odds in the delivered model (1: exact decomposition).
        self_weight: share of the hypothesis' own signal in the reference mixture
            (:class:`paratag.models.ratio.RatioOptions`; 0: the partners alone).
        init: ``stage3``: start from the stage-3 trunk (new output layer); ``random``.
        base_condition: what the stage-3 model sees of the ``vary`` parameters in the
            delivered model: ``hypothesis``, or their training ``mean`` (the stage-3
            factor then does not move with them; only the ratio does).
    """

    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    enabled: bool = False
    vary: tuple[str, ...] = ("mHc",)
    scale: float = 1.0
    self_weight: float = 0.0
    init: Literal["stage3", "random"] = "stage3"
    base_condition: Literal["hypothesis", "mean"] = "hypothesis"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.vary:
            raise ConfigError("ratio.vary is empty: name the condition parameters it learns")
        if self.scale < 0 or not 0 <= self.self_weight < 1:
            raise ConfigError(
                f"ratio.scale ({self.scale}) must be >= 0 and ratio.self_weight "
                f"({self.self_weight}) in [0, 1)"
            )


M_W = 80.379


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The ``loss:`` section of a train config.

    Attributes:
        kind: ``weighted_ce`` or ``physics_informed`` (weighted CE x difficulty).
        formula: difficulty formula: ``relative_gap``, ``kinematic_margin`` or ``none``.
        offset: the 0.1 of ``1 / (mass_gap + 0.1)``.
        m_w: W mass (GeV) for ``kinematic_margin``.
        width: sigmoid width (GeV) for ``kinematic_margin``.
        normalise: divide difficulties by their mean over the training points.
        disco_lambda: DisCo strength (0 disables it).
        disco_spectator: spectator (shard column ``spec_<name>``) to decorrelate from.
        disco_background_only: compute DisCo on background events only.
        disco_power: exponent of the distance correlation (1 as in the paper's code).
        signal_index: logit index of the signal class (the score).
    """

    kind: Literal["weighted_ce", "physics_informed"] = "weighted_ce"
    formula: Literal["relative_gap", "kinematic_margin", "none"] = "relative_gap"
    offset: float = 0.1
    m_w: float = M_W
    width: float = 10.0
    normalise: bool = True
    disco_lambda: float = 0.0
    disco_spectator: str = ""
    disco_background_only: bool = True
    disco_power: int = 1
    signal_index: int = 0

    def __post_init__(self) -> None:
        if self.offset <= 0 or self.width <= 0:
            raise ConfigError(
                f"loss.offset and loss.width must be > 0, got {self.offset}, {self.width}"
            )
        if self.disco_lambda < 0:
            raise ConfigError(f"loss.disco_lambda must be >= 0, got {self.disco_lambda}")
        if self.disco_lambda > 0 and not self.disco_spectator:
            raise ConfigError(
                "loss.disco_lambda > 0 needs loss.disco_spectator (e.g. fj_msoftdrop)"
            )


def _default_model() -> ModelConfig:
    return ModelConfig(name="parametric_particlenet")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A whole training run (the train YAML).

    Attributes:
        data: shards, folds, weights (:class:`~paratag.data.selection.DataConfig`).
        grid: mass grid and splits (:class:`~paratag.conditions.GridConfig`).
        model: the model (``condition_names``/mean/std default to the grid's).
        loss: the loss (:class:`~paratag.training.losses.LossConfig`).
        stage1, stage2, stage3: the schedule (:mod:`paratag.training.schedule`).
        ratio: the optional hypothesis ratio trained after stage 3 (:class:`RatioConfig`).
        run_dir: output directory.
        seed: controls initialisation, data order and background condition draws.
        device: ``auto`` (CUDA if present), ``cpu`` or ``cuda``.
        progress: tqdm bars (only on a TTY, never with CI=true).
        tensorboard: write TensorBoard scalars.
        threads: torch CPU threads during the run (None: torch's default). Small
            graph models train fastest with 1 thread per process on busy machines.
        heap: ``retain``: training serves large tensors from the heap and keeps freed
            memory (:func:`paratag.runtime.retain_heap`; CPU runs of pairwise models such
            as the Interaction Network: 1.3-1.5x faster epochs, up to 2x peak RSS);
            ``system``: the C library's defaults.
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    grid: GridConfig = dataclasses.field(default_factory=GridConfig)
    model: ModelConfig = dataclasses.field(default_factory=_default_model)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    stage1: Stage1Config = dataclasses.field(default_factory=Stage1Config)
    stage2: Stage2Config = dataclasses.field(default_factory=Stage2Config)
    stage3: Stage3Config = dataclasses.field(default_factory=Stage3Config)
    ratio: RatioConfig = dataclasses.field(default_factory=RatioConfig)
    run_dir: str = "runs/paratag"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True
    tensorboard: bool = True
    threads: int | None = None
    heap: Literal["system", "retain"] = "system"


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a train YAML; ``path`` may also name a packaged config (``demo`` -> ``train_demo.yaml``).

    Keyword overrides (``shards``, ``run_dir``, ``device``, ``seed``) replace
    the file's values when not None.
    """
    p = Path(path)
    if not p.is_file():
        from importlib import resources

        packaged = resources.files("paratag") / "configs" / f"train_{path}.yaml"
        if not packaged.is_file():
            raise ConfigError(
                f"{p}: train config does not exist (nor a packaged config train_{path}.yaml)"
            )
        p = Path(str(packaged))
    cfg = from_dict(TrainConfig, read_mapping(p), where=str(p))
    if overrides.get("shards") is not None:
        cfg = dataclasses.replace(
            cfg, data=dataclasses.replace(cfg.data, shards=str(overrides["shards"]))
        )
    top: dict[str, Any] = {
        k: (str(v) if k == "run_dir" else v)
        for k, v in overrides.items()
        if k in ("run_dir", "device", "seed") and v is not None
    }
    return dataclasses.replace(cfg, **top) if top else cfg
