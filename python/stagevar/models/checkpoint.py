"""The strict-load report of both families' checkpoint loaders: what did not match, and the error that carries it."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


@dataclass
class LoadReport:
    """What a load found: ``missing``/``unexpected`` key names, ``mismatched`` ``(key, ckpt_shape, model_shape)``,
    ``ignored`` keys deliberately skipped (e.g. the VAE encoder)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        def few(keys, n=10):
            s = ", ".join(keys[:n])
            return s + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")

        lines = []
        if self.missing:
            lines.append(f"missing {len(self.missing)} keys: {few(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected {len(self.unexpected)} keys: {few(self.unexpected)}")
        if self.mismatched:
            lines.append(
                "shape mismatch: " + few([f"{k} ckpt {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched])
            )
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} keys (not part of this model)")
        return "; ".join(lines) if lines else "all keys matched"


class CheckpointMismatch(ValueError):
    """A checkpoint's keys or shapes differ from the model's; ``report`` (a :class:`LoadReport`) lists them."""

    def __init__(self, what: str, report: LoadReport):
        super().__init__(f"{what}: {report}")
        self.report = report


def compare_keys(model: nn.Module, state_dict: dict) -> LoadReport:
    """The keys of ``state_dict`` against ``model``'s own: missing, unexpected and mis-shaped (nothing ignored)."""
    own = model.state_dict()
    return LoadReport(
        missing=[k for k in own if k not in state_dict],
        unexpected=[k for k in state_dict if k not in own],
        mismatched=[
            (k, tuple(state_dict[k].shape), tuple(own[k].shape))
            for k in own
            if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
        ],
    )
