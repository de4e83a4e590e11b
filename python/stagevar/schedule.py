"""Stage schedules: what StageVAR does at each scale step of the fidelity-refinement stage.

The fidelity stage is the last ``len(rank_ratios)`` scale steps of whatever schedule a generation uses, so a
schedule works for every aspect-ratio template and size (Infinity's smaller sizes are prefixes of the 1M
schedule; their last steps refine detail at their own final resolution). Per fidelity step:

- ``rank_ratio``: the fraction of the step's tokens kept as projected rows, one number or one per unit.
  ``0`` skips the step and every later one (no forward, no sampling, nothing added to the codes);
  ``1`` with ``projection="none"`` runs the step normally.
- ``guidance`` (for the whole stage): ``null`` (the paper: CFG scale 0, only the null-prompt rows run),
  ``cond`` (only the prompt rows, as SkipVAR) or ``cfg`` (both rows, normal guidance).
- ``unit``: what one projection spans: ``chunk`` (an Infinity block chunk, the paper's choice) or ``block``.
- ``restore_mode``: the upsampling of the previous scale's unit output (``area``, as FastVAR).
- ``projection``/``restoration``: ``rp`` + ``rtr`` (the paper), or the Table 2 variants ``svd`` (exact rank-r
  SVD features) and ``lls`` (least-squares restoration, Eq. 6); ``prune`` keeps FastVAR's pivotal tokens (the
  rows farthest from the mean) unprojected, an ablation of the projection; ``none`` disables the projection.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

GUIDANCES = ("cfg", "cond", "null")
UNITS = ("chunk", "block")
RESTORE_MODES = ("nearest", "bilinear", "bicubic", "area")
PROJECTIONS = ("rp", "svd", "prune", "none")
RESTORATIONS = ("rtr", "lls")

RatioSpec = float | tuple[float, ...]


@dataclass(frozen=True)
class StepPlan:
    """What the loop does at one scale step.

    ``mode`` is ``full`` (the blocks run on every token), ``reduced`` (projected rows) or ``skip``.
    ``ratios`` holds one rank ratio per unit for reduced steps.
    """

    mode: str
    guidance: str
    ratios: tuple[float, ...] = ()


@dataclass(frozen=True)
class StageSchedule:
    """The StageVAR configuration of the fidelity-refinement stage. See the module docstring."""

    rank_ratios: tuple[RatioSpec, ...] = ()
    guidance: str = "cfg"
    unit: str = "chunk"
    restore_mode: str = "area"
    projection: str = "rp"
    restoration: str = "rtr"
    seed: int = 0
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        ratios = tuple(
            tuple(float(v) for v in r) if isinstance(r, (list, tuple)) else float(r) for r in self.rank_ratios
        )
        object.__setattr__(self, "rank_ratios", ratios)
        self.validate()

    # ----------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for anything inconsistent."""
        for key, allowed in (
            ("guidance", GUIDANCES),
            ("unit", UNITS),
            ("restore_mode", RESTORE_MODES),
            ("projection", PROJECTIONS),
            ("restoration", RESTORATIONS),
        ):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}: expected one of {allowed}, got {getattr(self, key)!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed: expected an int in [0, 2**63), got {self.seed!r}")
        skipping = False
        for step, spec in enumerate(self.rank_ratios):
            values = spec if isinstance(spec, tuple) else (spec,)
            if not values:
                raise ValueError(f"rank_ratios[{step}]: empty per-unit list")
            for v in values:
                if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                    raise ValueError(f"rank_ratios[{step}]: ratios must lie in [0, 1], got {v}")
            zero = [v == 0.0 for v in values]
            if any(zero) and not all(zero):
                raise ValueError(f"rank_ratios[{step}]: a step is skipped as a whole; 0 cannot be mixed with others")
            if skipping and not all(zero):
                raise ValueError(
                    f"rank_ratios[{step}]: only the last steps can be skipped (a 0 must be followed by 0s)"
                )
            skipping = skipping or all(zero)
            if self.projection == "none" and not all(v in (0.0, 1.0) for v in values):
                raise ValueError(f"rank_ratios[{step}]: with projection='none' a step is either run (1) or skipped (0)")

    # ----------------------------------------------------------------- planning
    def plan(self, num_scales: int, num_units: int) -> list[StepPlan]:
        """One :class:`StepPlan` per scale step of a generation with ``num_scales`` steps and ``num_units`` units."""
        if len(self.rank_ratios) > num_scales:
            raise ValueError(
                f"rank_ratios: {len(self.rank_ratios)} fidelity steps do not fit a schedule of {num_scales} scales"
            )
        first = num_scales - len(self.rank_ratios)
        steps = [StepPlan("full", "cfg") for _ in range(first)]
        for spec in self.rank_ratios:
            values = spec if isinstance(spec, tuple) else (spec,) * num_units
            if len(values) != num_units:
                raise ValueError(
                    f"rank_ratios: per-unit list of {len(values)} ratios for a model with {num_units} units"
                )
            if all(v == 0.0 for v in values):
                steps.append(StepPlan("skip", self.guidance))
            elif self.projection == "none":
                steps.append(StepPlan("full", self.guidance))
            else:
                steps.append(StepPlan("reduced", self.guidance, tuple(values)))
        if steps and steps[0].mode == "reduced":
            raise ValueError("rank_ratios: the first scale step has no previous output to restore from; keep it full")
        return steps

    @property
    def is_vanilla(self) -> bool:
        """True when the schedule changes nothing (no skip, no projection, full guidance)."""
        runs_all = all(all(v == 1.0 for v in (r if isinstance(r, tuple) else (r,))) for r in self.rank_ratios)
        return self.guidance == "cfg" and runs_all and (self.projection == "none" or not self.rank_ratios)

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        data = asdict(self)
        data["rank_ratios"] = [list(r) if isinstance(r, tuple) else r for r in self.rank_ratios]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> StageSchedule:
        if not isinstance(data, dict):
            raise ValueError(f"schedule: expected a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"schedule: unknown keys {unknown} (known: {sorted(known)})")
        data = dict(data)
        data["rank_ratios"] = tuple(tuple(r) if isinstance(r, list) else r for r in data.get("rank_ratios", ()))
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> StageSchedule:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"schedule file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"schedule: {path} is not valid JSON ({err})") from None
        return cls.from_dict(data)

    def with_(self, **changes) -> StageSchedule:
        return replace(self, **changes)


PAPER_RANK_RATIO = 0.176  # alpha = 0.96 in the paper (Table 1), its chosen operating point
TABLE7_RANK_RATIOS = (0.016, 0.136, 0.210, 0.250, 0.256, 0.198, 0.157, 0.191)  # block_chunks.0..7 at 40x40


def presets(model: str = "infinity") -> dict[str, StageSchedule]:
    """The named schedules for ``model`` (``infinity`` or ``star``)."""
    if model not in ("infinity", "star"):
        raise ValueError(f"model: expected 'infinity' or 'star', got {model!r}")
    if model == "infinity":
        # Paper, section 4.1: the last three steps (40, 48, 64 at 1024px) with ratios 0.176 / 0 / 0, null guidance,
        # one projection per block chunk.
        return {
            "vanilla": StageSchedule((), name="vanilla", projection="none"),
            "paper": StageSchedule((PAPER_RANK_RATIO, 0.0, 0.0), guidance="null", unit="chunk", name="paper"),
            "skip-only": StageSchedule((1.0, 0.0, 0.0), projection="none", name="skip-only"),
            "cfg-drop-only": StageSchedule((1.0, 1.0, 1.0), guidance="null", projection="none", name="cfg-drop-only"),
            # The paper's per-chunk ranks at alpha = 0.96 for the 40x40 step (Table 7, Infinity-2B, GenEval prompts):
            # their mean is the 17.6% of the uniform preset. Needs 8 chunks (Infinity-2B and -8B).
            "paper-table7": StageSchedule(
                (TABLE7_RANK_RATIOS, 0.0, 0.0), guidance="null", unit="chunk", name="paper-table7"
            ),
        }
    # STAR (paper, section 4.1 and D.1): the last step at 0.176 with null guidance, one projection per block.
    return {
        "vanilla": StageSchedule((), name="vanilla", projection="none", unit="block"),
        "paper": StageSchedule((PAPER_RANK_RATIO,), guidance="null", unit="block", name="paper"),
        "skip-only": StageSchedule((0.0,), projection="none", unit="block", name="skip-only"),
        "cfg-drop-only": StageSchedule((1.0,), guidance="null", projection="none", unit="block", name="cfg-drop-only"),
    }


def resolve(schedule: str | StageSchedule | dict | Path, model: str = "infinity") -> StageSchedule:
    """A schedule from a preset name, a JSON file path, a dict or a :class:`StageSchedule`."""
    if isinstance(schedule, StageSchedule):
        return schedule
    if isinstance(schedule, dict):
        return StageSchedule.from_dict(schedule)
    table = presets(model)
    if isinstance(schedule, str) and schedule in table:
        return table[schedule]
    if isinstance(schedule, (str, Path)) and (str(schedule).endswith(".json") or Path(schedule).exists()):
        return StageSchedule.load(schedule)
    raise ValueError(f"schedule: expected a preset {sorted(table)} or a JSON file, got {schedule!r}")
