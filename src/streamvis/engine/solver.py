"""Optimizer and learning-rate schedule of the official CrossVIS recipe.

SGD (momentum 0.9, weight decay 1e-4, 0 on norm-layer parameters) with detectron2's
WarmupMultiStepLR: a linear warm-up from `warmup_factor` over `warmup_iters` iterations, then
the rate is multiplied by `gamma` at each of `steps` (reference facts.md, section 9).
"""

from __future__ import annotations

import bisect

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from streamvis.config import SolverConfig

# official: detectron2 get_default_optimizer_params treats these as norm layers (WEIGHT_DECAY_NORM)
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def optimizer_param_groups(model: nn.Module, cfg: SolverConfig) -> list[dict]:
    """Trainable parameters in two groups: regular (weight_decay) and norm layers (weight_decay_norm).

    Frozen parameters (requires_grad False) and repeated (shared) parameters are left out.

    Returns:
        ``[{"params": [...], "weight_decay": wd}, {"params": [...], "weight_decay": wd_norm}]``
        (empty groups are dropped).
    """
    seen: set[int] = set()
    regular, norm = [], []
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (norm if isinstance(module, NORM_TYPES) else regular).append(param)
    groups = [
        {"params": regular, "weight_decay": cfg.weight_decay},
        {"params": norm, "weight_decay": cfg.weight_decay_norm},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: SolverConfig) -> torch.optim.SGD:
    """SGD over `optimizer_param_groups(model, cfg)` with lr `cfg.base_lr` and `cfg.momentum`."""
    groups = optimizer_param_groups(model, cfg)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum)


def warmup_multistep_factor(
    iteration: int, *, steps, gamma: float, warmup_iters: int, warmup_factor: float
) -> float:
    """The learning-rate multiplier at 0-based `iteration` (detectron2 WarmupMultiStepLR, linear).

    During warm-up the factor is ``warmup_factor * (1 - a) + a`` with ``a = iteration / warmup_iters``;
    after it, ``gamma ** (number of steps <= iteration)``.
    """
    factor = gamma ** bisect.bisect_right(list(steps), iteration)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


class WarmupMultiStepLR(LRScheduler):
    """`warmup_multistep_factor` as a torch scheduler; call `step()` once per iteration.

    Its state (`state_dict`) holds only ints, floats and lists, so it loads with
    ``torch.load(weights_only=True)``. The schedule itself (steps, gamma, warm-up) is not part of
    the state: a resumed run follows its current config (e.g. a longer schedule), as detectron2 does.

    Args:
        optimizer: the optimizer whose groups' lr is set (base: each group's initial lr).
        steps, gamma, warmup_iters, warmup_factor: see `warmup_multistep_factor`.
    """

    def __init__(self, optimizer, *, steps, gamma: float, warmup_iters: int, warmup_factor: float):
        self.steps = [int(s) for s in steps]
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        super().__init__(optimizer, last_epoch=-1)

    def factor(self, iteration: int) -> float:
        return warmup_multistep_factor(
            iteration,
            steps=self.steps,
            gamma=self.gamma,
            warmup_iters=self.warmup_iters,
            warmup_factor=self.warmup_factor,
        )

    SCHEDULE_KEYS = ("steps", "gamma", "warmup_iters", "warmup_factor")

    def state_dict(self) -> dict:
        return {k: v for k, v in super().state_dict().items() if k not in self.SCHEDULE_KEYS}

    def get_lr(self) -> list[float]:
        factor = self.factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


def build_lr_scheduler(optimizer, cfg: SolverConfig) -> WarmupMultiStepLR:
    """The official schedule for `optimizer` from `cfg` (scaled when ``cfg.scale_schedule``)."""
    steps, warmup_iters = effective_schedule(cfg)
    return WarmupMultiStepLR(
        optimizer,
        steps=steps,
        gamma=cfg.gamma,
        warmup_iters=warmup_iters,
        warmup_factor=cfg.warmup_factor,
    )


def effective_schedule(cfg: SolverConfig) -> tuple[tuple[int, ...], int]:
    """The (steps, warmup_iters) the run uses.

    With ``solver.scale_schedule: true`` both are scaled by ``max_iter / schedule_max_iter``
    (the length the schedule was written for: the config file's own ``max_iter`` unless set),
    rounded to whole iterations; otherwise they are the configured values.
    """
    if not cfg.scale_schedule or cfg.schedule_max_iter in (None, cfg.max_iter):
        return tuple(cfg.steps), cfg.warmup_iters
    ratio = cfg.max_iter / cfg.schedule_max_iter
    return tuple(int(round(step * ratio)) for step in cfg.steps), int(round(cfg.warmup_iters * ratio))


def schedule_notes(cfg: SolverConfig) -> list[str]:
    """What a short run should know about its schedule, one line per fact (empty when all fits).

    Reported: the scaling applied by ``solver.scale_schedule``; a warm-up that does not end
    before ``max_iter`` (the run never reaches ``base_lr``); steps at or after ``max_iter``
    (they never apply).
    """
    steps, warmup_iters = effective_schedule(cfg)
    notes = []
    if (steps, warmup_iters) != (tuple(cfg.steps), cfg.warmup_iters):
        notes.append(f"solver.scale_schedule: warm-up {cfg.warmup_iters} -> {warmup_iters} iterations, steps "
                     f"{list(cfg.steps)} -> {list(steps)} (written for {cfg.schedule_max_iter} iterations, "
                     f"the run has {cfg.max_iter})")
    if warmup_iters >= cfg.max_iter:
        last = warmup_multistep_factor(cfg.max_iter - 1, steps=steps, gamma=cfg.gamma,
                                       warmup_iters=warmup_iters, warmup_factor=cfg.warmup_factor)
        notes.append(f"solver.warmup_iters={warmup_iters} >= solver.max_iter={cfg.max_iter}: the run ends "
                     f"inside the warm-up, at {last:.3g} x base_lr; set solver.scale_schedule=true to scale "
                     "the schedule to the run, or lower solver.warmup_iters")
    outside = [s for s in steps if s >= cfg.max_iter]
    if outside:
        notes.append(f"solver.steps {outside} fall at or after solver.max_iter={cfg.max_iter} and never "
                     "apply; set solver.scale_schedule=true to scale them to the run")
    return notes
