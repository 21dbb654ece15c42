"""SGD parameter groups and the official WarmupMultiStepLR schedule."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from streamvis.config import SolverConfig
from streamvis.engine.solver import (
    build_lr_scheduler,
    build_optimizer,
    optimizer_param_groups,
    warmup_multistep_factor,
)


def _model() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    model[3].weight.requires_grad_(False)  # frozen: left out
    return model


def test_norm_params_get_their_own_weight_decay():
    model = _model()
    groups = optimizer_param_groups(model, SolverConfig(weight_decay=1e-4, weight_decay_norm=0.0))
    assert [g["weight_decay"] for g in groups] == [1e-4, 0.0]
    regular = {id(p) for p in groups[0]["params"]}
    norm = {id(p) for p in groups[1]["params"]}
    assert regular == {id(model[0].weight), id(model[0].bias), id(model[3].bias)}
    assert norm == {id(p) for p in [*model[1].parameters(), *model[2].parameters()]}
    optimizer = build_optimizer(model, SolverConfig(base_lr=0.02))
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.param_groups[0]["lr"] == 0.02


def test_official_factor_values():
    kw = {"steps": (15000, 21000), "gamma": 0.1, "warmup_iters": 1000, "warmup_factor": 0.001}
    assert warmup_multistep_factor(0, **kw) == pytest.approx(0.001)
    assert warmup_multistep_factor(500, **kw) == pytest.approx(0.001 * 0.5 + 0.5)
    assert warmup_multistep_factor(999, **kw) == pytest.approx(0.001 * 0.001 + 0.999)
    assert warmup_multistep_factor(1000, **kw) == 1.0
    assert warmup_multistep_factor(14999, **kw) == 1.0
    assert warmup_multistep_factor(15000, **kw) == pytest.approx(0.1)
    assert warmup_multistep_factor(21000, **kw) == pytest.approx(0.01)


def test_scheduler_steps_the_lr_and_restores_with_weights_only():
    cfg = SolverConfig(base_lr=0.1, steps=(3,), warmup_iters=2, warmup_factor=0.5, max_iter=5)
    model = nn.Linear(2, 1)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_lr_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.05, 0.075, 0.1, 0.01, 0.01])
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh_opt = build_optimizer(model, cfg)
    fresh = build_lr_scheduler(fresh_opt, cfg)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 5 and fresh.get_last_lr() == pytest.approx([0.01])
    # a resumed run follows its current schedule (here: a later step), not the saved one
    longer_cfg = SolverConfig(base_lr=0.1, steps=(8,), warmup_iters=2, warmup_factor=0.5, max_iter=9)
    longer = build_lr_scheduler(build_optimizer(model, cfg), longer_cfg)
    longer.load_state_dict(state)
    assert longer.steps == [8] and longer.factor(5) == 1.0


def test_scale_schedule_scales_steps_and_warmup_from_the_file_length(tmp_path):
    from streamvis.config import load_config
    from streamvis.engine.solver import effective_schedule, schedule_notes

    path = tmp_path / "c.yaml"
    path.write_text("solver:\n  max_iter: 2400\n  steps: [1900, 2200]\n  warmup_iters: 100\n"
                    "  scale_schedule: true\n")
    cfg = load_config(path, ["solver.max_iter=240"]).solver
    assert cfg.schedule_max_iter == 2400 and effective_schedule(cfg) == ((190, 220), 10)
    assert schedule_notes(cfg) == ["solver.scale_schedule: warm-up 100 -> 10 iterations, steps [1900, 2200] "
                                   "-> [190, 220] (written for 2400 iterations, the run has 240)"]
    plain = load_config(path, ["solver.max_iter=240", "solver.scale_schedule=false"]).solver
    assert plain.schedule_max_iter is None and effective_schedule(plain) == ((1900, 2200), 100)
    notes = schedule_notes(plain)
    assert len(notes) == 1
    assert notes[0].startswith("solver.steps [1900, 2200] fall at or after solver.max_iter=240")
    assert schedule_notes(load_config(path).solver) == []  # the file's own length: nothing to say
