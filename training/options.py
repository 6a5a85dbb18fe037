"""Training options: one dataclass, stored in every checkpoint."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .data import check_spec


@dataclasses.dataclass
class TrainOptions:
    """Everything a training run is made from (the DCGAN paper's recipe by default)."""

    preset: str = "dcgan28"
    data: str = "fashion-mnist"
    out: str = "runs/train"
    steps: int = 10_000
    batch_size: int = 64  # per process
    seed: int = 0
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    # learning-rate steps: ((STEP, LR), ...): from STEP steps done on, the net's Adam uses LR
    lr_g_at: tuple[tuple[int, float], ...] = ()
    lr_d_at: tuple[tuple[int, float], ...] = ()
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.999  # at step k: min(ema_decay, (1 + k) / (10 + k)); 0 disables the EMA generator
    label_smoothing: float = 0.0  # one-sided: real targets are 1 - label_smoothing
    channels: int | None = None  # default: the data's (1 for gray, 3 for RGB)
    latent_dim: int | None = None  # default: the preset's
    width: int | None = None  # default: the preset's
    data_limit: int | None = None  # use the first N images only
    checkpoint_every: int = 1000
    eval_every: int = 1000
    eval_samples: int = 5000
    keep: int = 3  # older checkpoints kept besides last.pt and best.pt
    log_every: int = 50
    device: str = "auto"
    amp: bool | None = None  # bf16 autocast; default: on for CUDA
    channels_last: bool | None = None  # default: on
    recalibration_batches: int = 50  # BN statistics recomputed from this many fresh batches

    # What may change when a run is resumed; everything else must match the checkpoint. The device
    # may change within its type (cuda:0 -> cuda:1, auto -> cpu); the Trainer refuses another type.
    RUN_CONTROL = ("out", "steps", "checkpoint_every", "eval_every", "eval_samples", "keep", "log_every", "device")
    # Checked by what they lead to, not by their spelling: the data by its contents (a relative path
    # given from another folder is the same data), the defaults (None) by the value they resolved to.
    CHECKED_BY_RESULT = ("data", "channels", "latent_dim", "width", "amp", "channels_last")

    def __post_init__(self) -> None:
        positive = ["steps", "batch_size", "checkpoint_every", "eval_every", "eval_samples", "log_every",
                    "recalibration_batches"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        check_spec(self.data)
        for name in ("lr_g", "lr_d"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"--{name.replace('_', '-')} must be positive and finite, got {value}")
        self.lr_g_at, self.lr_d_at = _schedule(self.lr_g_at, "lr_g_at"), _schedule(self.lr_d_at, "lr_d_at")
        for name in ("beta1", "beta2"):
            if not (0 <= getattr(self, name) < 1):
                raise ValueError(f"--{name} must be in [0, 1), got {getattr(self, name)}")
        if not (0 <= self.ema_decay < 1):
            raise ValueError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if not (0 <= self.label_smoothing < 0.5):
            raise ValueError(f"--label-smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.eval_samples < 2:
            raise ValueError(f"--eval-samples must be at least 2 (a covariance needs two), got {self.eval_samples}")
        if not 0 <= self.seed < 2 ** 32:  # per-epoch and per-rank seeds are derived from it in 64 bits
            raise ValueError(f"--seed must be in 0..{2 ** 32 - 1}, got {self.seed}")
        if self.keep < 0:
            raise ValueError(f"--keep must be >= 0, got {self.keep}")
        if self.channels is not None and self.channels not in (1, 3):
            raise ValueError(f"--channels must be 1 or 3, got {self.channels}")
        if self.data_limit is not None and self.data_limit <= 0:
            raise ValueError(f"--data-limit must be positive, got {self.data_limit}")

    def learning_rates(self, step: int) -> tuple[float, float]:
        """G's and D's learning rates for the update made after `step` steps."""
        return _rate_at(self.lr_g, self.lr_g_at, step), _rate_at(self.lr_d, self.lr_d_at, step)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_saved(cls, options: dict[str, Any]) -> TrainOptions:
        """The options a checkpoint recorded (fields of other ganserve versions dropped, missing ones defaulted)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in known})

    @classmethod
    def resumed(cls, saved: dict[str, Any], given: dict[str, Any]) -> TrainOptions:
        """The saved options with the run-control fields of `given`; other differences are refused.

        A `CHECKED_BY_RESULT` field is taken as given where the saved value is a default (None) or,
        for the data, whenever it is given: the Trainer then checks what it leads to (the data's
        contents, the architecture, the effective amp and channels-last) against the checkpoint.
        """
        merged = cls.from_saved(saved).to_dict()
        for key, value in given.items():
            if key in cls.RUN_CONTROL or (key in cls.CHECKED_BY_RESULT and value is not None
                                          and (key == "data" or merged.get(key) is None)):
                merged[key] = value
            elif value is not None and merged.get(key) != value:
                raise ValueError(f"--resume: the checkpoint was trained with {key}={merged.get(key)!r}, "
                                 f"not {value!r}; a resumed run keeps its settings")
        return cls(**merged)


def parse_rate_steps(specs: list[str] | None, option: str) -> tuple[tuple[int, float], ...] | None:
    """`--lr-d-at 56000:5e-5` (repeatable) -> ((56000, 5e-5),); None when not given."""
    if not specs:
        return None
    pairs = []
    for spec in specs:
        step, _, rate = spec.partition(":")  # no ":" leaves rate "", which float() refuses
        try:
            pairs.append((int(step), float(rate)))
        except ValueError:
            raise ValueError(f"{option} takes STEP:LR (e.g. 56000:5e-5), got {spec!r}") from None
    return tuple(pairs)


def _schedule(pairs: Any, name: str) -> tuple[tuple[int, float], ...]:
    """`pairs` as (int step, float rate) tuples (a checkpoint may hold lists); steps must increase."""
    option = f"--{name.replace('_', '-')}"
    try:
        out = tuple((int(step), float(rate)) for step, rate in pairs)
    except (TypeError, ValueError):
        raise ValueError(f"{option}: expected (step, rate) pairs, got {pairs!r}") from None
    steps = [step for step, _ in out]
    for step, rate in out:
        if step <= 0 or not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"{option}: steps must be positive and rates positive and finite, got {step}:{rate}")
    if steps != sorted(set(steps)):
        raise ValueError(f"{option}: steps must be distinct and in increasing order, got {steps}")
    return out


def _rate_at(base: float, pairs: tuple[tuple[int, float], ...], step: int) -> float:
    rate = base
    for start, value in pairs:
        if step >= start:
            rate = value
    return rate
