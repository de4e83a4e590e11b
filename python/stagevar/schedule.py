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
import numbers
import stat
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from stagevar_kernels import RESTORE_MODES
from stagevar_kernels.philox import MAX_SEED

from .families import FAMILIES
from .models.session import GUIDANCES, UNIT_KINDS

PROJECTIONS = ("rp", "svd", "prune", "none")
RESTORATIONS = ("rtr", "lls")

RatioSpec = float | tuple[float, ...]

MAX_FILE_BYTES = 1 << 20  # a schedule is a few hundred bytes; larger files are not schedules
MAX_DEPTH = 4  # object -> rank_ratios list -> per-unit list -> number


def _ratio(value, where: str) -> float:
    # numbers only: a bool or a string ("0.5") is a mistake in the file, not a ratio
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}: expected a number, got {type(value).__name__} {value!r:.40}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{where}: number out of range ({str(value)[:20]}...)") from None


def _ratio_spec(spec, step: int) -> RatioSpec:
    if isinstance(spec, (list, tuple)):
        return tuple(_ratio(v, f"rank_ratios[{step}][{i}]") for i, v in enumerate(spec))
    return _ratio(spec, f"rank_ratios[{step}]")


def _depth(value) -> int:
    """Nesting depth of parsed JSON, iteratively (a deep file must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


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
        if not isinstance(self.rank_ratios, (list, tuple)):
            raise ValueError(f"rank_ratios: expected a list, got {type(self.rank_ratios).__name__}")
        ratios = tuple(_ratio_spec(r, step) for step, r in enumerate(self.rank_ratios))
        object.__setattr__(self, "rank_ratios", ratios)
        self.validate()

    # ----------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for anything inconsistent."""
        if not isinstance(self.name, str):
            raise ValueError(f"name: expected a string, got {type(self.name).__name__}")
        for key, allowed in (
            ("guidance", GUIDANCES),
            ("unit", UNIT_KINDS),
            ("restore_mode", RESTORE_MODES),
            ("projection", PROJECTIONS),
            ("restoration", RESTORATIONS),
        ):
            value = getattr(self, key)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"{key}: expected one of {allowed}, got {value!r:.60}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: expected an int in [0, 2**63), got {self.seed!r:.40}")
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
        """A schedule from its JSON object; ``ValueError`` naming the field for any wrong key, type or value."""
        if not isinstance(data, dict):
            raise ValueError(f"schedule: expected a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(str(k)[:40] for k in set(data) - known)
        if unknown:
            raise ValueError(f"schedule: unknown keys {unknown} (known: {sorted(known)})")
        data = dict(data)
        ratios = data.get("rank_ratios", [])
        if not isinstance(ratios, list):
            raise ValueError(f"rank_ratios: expected a list, got {type(ratios).__name__}")
        for step, spec in enumerate(ratios):
            if isinstance(spec, list):
                for i, v in enumerate(spec):
                    _ratio(v, f"rank_ratios[{step}][{i}]")
            else:
                _ratio(spec, f"rank_ratios[{step}]")
        data["rank_ratios"] = tuple(tuple(r) if isinstance(r, list) else r for r in ratios)
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write the JSON atomically (a temporary file in the same folder, then renamed over ``path``)."""
        from .atomic import write_text

        write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> StageSchedule:
        """Read a schedule JSON file (at most 1 MiB, nesting at most 4 deep); errors name the file and the field."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"schedule file not found: {path}")
        if not stat.S_ISREG(path.stat().st_mode):
            raise ValueError(f"schedule: {path} is not a regular file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"schedule: {path} is larger than {MAX_FILE_BYTES} bytes; not a schedule file")
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError(f"schedule: {path} is larger than {MAX_FILE_BYTES} bytes; not a schedule file")
        try:
            data = json.loads(raw.decode("utf-8"), parse_int=_parse_int, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError, and the number checks above
            raise ValueError(f"schedule: {path} is not valid JSON ({err})") from None
        except RecursionError:
            raise ValueError(f"schedule: {path} nests deeper than {MAX_DEPTH} levels") from None
        if _depth(data) > MAX_DEPTH:
            raise ValueError(f"schedule: {path} nests deeper than {MAX_DEPTH} levels")
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as err:
            message = str(err).removeprefix("schedule: ")
            raise ValueError(f"schedule: {path}: {message}") from None

    def with_(self, **changes) -> StageSchedule:
        return replace(self, **changes)


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:  # past int64: no ratio or seed, and huge ones are slow to convert
        raise ValueError(f"integer of {len(text)} digits out of range")
    return int(text)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a valid number")


def presets(model: str = "infinity") -> dict[str, StageSchedule]:
    """The named schedules of family ``model`` (``infinity``, ``star``: :data:`stagevar.families.FAMILIES`)."""
    if model not in FAMILIES:
        raise ValueError(f"model: expected one of {sorted(FAMILIES)}, got {model!r}")
    entry = FAMILIES[model]
    return {
        name: StageSchedule.from_dict({"unit": entry.default_unit, **fields, "name": name})
        for name, fields in entry.presets.items()
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
