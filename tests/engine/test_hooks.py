"""engine/hooks.py directly: each hook driven by a hand-made TrainContext, no training loop."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

from streamvis.engine.checkpoint import Checkpointer, load_checkpoint
from streamvis.engine.distributed import DistInfo
from streamvis.engine.hooks import (
    CheckpointHook,
    EvalHook,
    HookBase,
    LossCurvePlotter,
    MetricsFile,
    MetricsWriter,
    ProgressBar,
    TrainContext,
    read_metrics,
)


@dataclass(frozen=True)
class TinyModelConfig:
    method: str = "tiny"


@dataclass(frozen=True)
class TinyTrainConfig:
    log_period: int = 2
    checkpoint_period: int = 4


@dataclass(frozen=True)
class TinyExperiment:
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    train: TinyTrainConfig = field(default_factory=TinyTrainConfig)


def make_context(tmp_path: Path, *, max_iter: int = 6, start_iter: int = 0) -> TrainContext:
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainContext(config=TinyExperiment(), model=model, optimizer=optimizer,
                        scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 10),
                        scaler=torch.amp.GradScaler("cpu", enabled=False), device=torch.device("cpu"),
                        dist=DistInfo(), output_dir=tmp_path, max_iter=max_iter, start_iter=start_iter,
                        iteration=start_iter)


def run_steps(ctx: TrainContext, hooks: list[HookBase], losses: list[float]) -> None:
    """What `run_training` does around each step, with the given loss values."""
    for hook in hooks:
        hook.before_train(ctx)
    for loss in losses:
        ctx.iteration += 1
        ctx.step_metrics = {"loss_a": loss, "total_loss": loss, "lr": 0.1 * ctx.iteration, "time": 0.5}
        for hook in hooks:
            hook.after_step(ctx)
    for hook in hooks:
        hook.after_train(ctx)


def test_metrics_writer_averages_each_period_and_keeps_the_last_lr(tmp_path):
    ctx = make_context(tmp_path, max_iter=5)
    metrics = MetricsFile(tmp_path / "metrics.jsonl")
    run_steps(ctx, [MetricsWriter(metrics, period=2)], [4.0, 2.0, 1.0, 3.0, 5.0])
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [2, 4, 5]  # the last, partial period is flushed too
    assert [r["loss_a"] for r in records] == [3.0, 2.0, 5.0]
    assert [r["lr"] for r in records] == pytest.approx([0.2, 0.4, 0.5])
    assert records[-1]["eta_seconds"] == 0.0 and records[0]["eta_seconds"] >= 0


def test_metrics_file_drops_records_after_the_resume_point(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"iteration": i}) + "\n" for i in (2, 4, 6)) + '{"iteration": 8')
    assert [r["iteration"] for r in read_metrics(path)] == [2, 4, 6]  # the torn line is skipped
    MetricsFile(path, truncate_after=4)
    assert [r["iteration"] for r in read_metrics(path)] == [2, 4]
    assert read_metrics(tmp_path / "missing.jsonl") == []


def test_checkpoint_hook_saves_periodically_and_at_the_end(tmp_path):
    ctx = make_context(tmp_path, max_iter=6)
    checkpointer = Checkpointer(tmp_path, keep_last=5)
    run_steps(ctx, [CheckpointHook(checkpointer, period=2)], [1.0] * 6)
    names = sorted(p.name for p in tmp_path.glob("model_*.pth"))
    assert names == ["model_0000002.pth", "model_0000004.pth", "model_final.pth"]  # not 6: final is
    state = load_checkpoint(tmp_path / "model_final.pth")
    assert state["iteration"] == 6 and state["method"] == "tiny" and state["config"] == {"method": "tiny"}
    assert set(state["model"]) == {"weight", "bias"} and len(state["rng"]) == 1
    assert checkpointer.latest().name == "model_final.pth"


def test_eval_hook_runs_in_eval_mode_without_moving_the_rng(tmp_path):
    ctx = make_context(tmp_path, max_iter=4)
    seen = []

    def evaluate(model):
        seen.append((model.training, torch.is_grad_enabled()))
        torch.rand(3), random.random()  # draws inside evaluation must not shift training randomness
        return {"AP": 0.25}

    metrics = MetricsFile(tmp_path / "metrics.jsonl")
    hook = EvalHook(evaluate, metrics, period=2)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    run_steps(ctx, [hook], [1.0] * 4)
    assert torch.equal(torch.rand(1), expected)
    assert seen == [(False, False), (False, False)]  # iteration 2 and the end (not 4 twice)
    assert ctx.model.training and hook.last_results == {"AP": 0.25}
    assert [r["iteration"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [2, 4]


def test_loss_curve_plotter_draws_at_the_end_only_when_losses_exist(tmp_path):
    metrics_path, png = tmp_path / "metrics.jsonl", tmp_path / "curve.png"
    plotter = LossCurvePlotter(metrics_path, png, min_interval_s=3600)
    ctx = make_context(tmp_path, max_iter=2)
    run_steps(ctx, [plotter], [1.0, 0.5])
    assert not png.exists()  # no metrics written: nothing to draw
    MetricsFile(metrics_path).write({"iteration": 1, "loss_a": 1.0, "total_loss": 1.0, "lr": 0.1})
    plotter.after_train(ctx)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_bar_only_on_rank_0(tmp_path):
    ctx = make_context(tmp_path, max_iter=2)
    ctx.dist = DistInfo(rank=1, world_size=2)
    bar = ProgressBar()
    bar.before_train(ctx)
    assert bar.bar is None
    ctx.dist = DistInfo()
    disabled = ProgressBar(enabled=False)
    run_steps(ctx, [disabled], [1.0])
    assert disabled.bar is None
