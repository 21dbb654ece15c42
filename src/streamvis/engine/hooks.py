"""Callbacks of the training loop: four events (before/after train, before/after step).

Each hook gets the `TrainContext` (model, optimizer, iteration, the last step's losses...) and
keeps its own state. The default list (`default_hooks` in train.py): `CheckpointHook`,
`MetricsWriter`, `EvalHook`, `LossCurvePlotter`, `ProgressBar`. Only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from streamvis.engine import distributed as du
from streamvis.engine.checkpoint import (
    FINAL_NAME,
    Checkpointer,
    capture_rng_state,
    periodic_name,
    preserved_rng,
)
from streamvis.utils.io import atomic_open

METRICS_FILE = "metrics.jsonl"
LOSS_CURVE_FILE = "loss_curve.png"


@dataclass
class TrainContext:
    """The state the loop shares with its hooks.

    `iteration` counts completed iterations (the checkpoint after iteration 1900 is
    ``model_0001900.pth`` and resumes at iteration 1901). `step_metrics` holds the last step's
    values: every ``loss_*`` and ``total_loss`` averaged over ranks, ``lr``, ``time`` and
    ``data_time`` (seconds).
    """

    config: Any  # ExperimentConfig
    model: nn.Module  # the bare model (not the DDP wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any  # torch.amp.GradScaler (disabled on CPU)
    device: torch.device
    dist: du.DistInfo
    output_dir: Path
    max_iter: int
    start_iter: int = 0
    iteration: int = 0
    step_metrics: dict[str, float] = field(default_factory=dict)
    hooks: list = field(default_factory=list)  # set by run_training; their states go into checkpoints
    resumed_hook_states: dict[str, dict] = field(default_factory=dict)  # from the resumed checkpoint

    def training_state(self) -> dict:
        """Everything a checkpoint stores; collective: every rank must call it (RNG states are gathered)."""
        from streamvis.config import to_dict
        from streamvis.models.weights import file_header

        return {
            **file_header(self.config.model),  # format, format_version, method, config
            "model": self.model.state_dict(),
            "experiment": to_dict(self.config),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "iteration": self.iteration,
            "world_size": self.dist.world_size,
            "rng": du.all_gather_object(capture_rng_state()),
            "hooks": {type(h).__name__: st for h in self.hooks if (st := h.state_dict()) is not None},
        }


class HookBase:
    """A training-loop callback; override any of the four events.

    A hook whose state must survive a resume (e.g. a half-filled logging window) returns it from
    `state_dict` as plain values (it is stored in checkpoints, read with ``weights_only=True``)
    and takes it back in `load_state_dict`, before `before_train`.
    """

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict) -> None:
        pass

    def before_train(self, ctx: TrainContext) -> None:
        pass

    def after_train(self, ctx: TrainContext) -> None:
        pass

    def before_step(self, ctx: TrainContext) -> None:
        pass

    def after_step(self, ctx: TrainContext) -> None:
        pass


class CheckpointHook(HookBase):
    """Saves the training state every `period` iterations and ``model_final.pth`` at the end."""

    def __init__(self, checkpointer: Checkpointer, *, period: int):
        self.checkpointer = checkpointer
        self.period = period
        self.last_saved_iteration: int | None = None

    def after_step(self, ctx: TrainContext) -> None:
        if ctx.iteration % self.period == 0 and ctx.iteration < ctx.max_iter:
            self.save_now(ctx, periodic_name(ctx.iteration))

    def after_train(self, ctx: TrainContext) -> None:
        self.save_now(ctx, FINAL_NAME)

    def save_now(self, ctx: TrainContext, name: str) -> None:
        """Save the training state as ``output_dir/name`` (collective: every rank calls it)."""
        state = ctx.training_state()  # collective: all ranks
        if ctx.dist.is_main:
            self.checkpointer.save(name, state)
        self.last_saved_iteration = ctx.iteration
        du.barrier()


def read_metrics(path) -> list[dict]:
    """The records of a metrics.jsonl file (a torn last line from a crash is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsFile:
    """Appends JSON lines to ``metrics.jsonl`` (rank 0 only).

    Args:
        path: the file.
        truncate_after: when resuming, records of iterations after this one (written before the
            interruption and about to be redone) are dropped first, atomically.
    """

    def __init__(self, path, *, truncate_after: int | None = None):
        self.path = Path(path)
        if truncate_after is not None and self.path.is_file():
            kept = [r for r in read_metrics(self.path) if r.get("iteration", 0) <= truncate_after]
            with atomic_open(self.path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)

    def write(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class MetricsWriter(HookBase):
    """Every `period` iterations, writes one line: losses/time averaged over the period, lr, ETA."""

    def __init__(self, metrics: MetricsFile | None, *, period: int):
        self.metrics = metrics
        self.period = period
        self._window: list[dict[str, float]] = []
        self._start = 0.0

    def before_train(self, ctx: TrainContext) -> None:
        self._start = time.perf_counter()

    def state_dict(self) -> dict:
        """The steps logged since the last line: a resume at any iteration writes the same lines."""
        return {"window": [dict(w) for w in self._window]}

    def load_state_dict(self, state: dict) -> None:
        self._window = [dict(w) for w in state.get("window", [])]

    def after_step(self, ctx: TrainContext) -> None:
        self._window.append(dict(ctx.step_metrics))
        if ctx.iteration % self.period == 0 or ctx.iteration == ctx.max_iter:
            self._flush(ctx)

    def _flush(self, ctx: TrainContext) -> None:
        window, self._window = self._window, []
        if self.metrics is None or not window:
            return
        record: dict[str, Any] = {"iteration": ctx.iteration}
        for key in window[-1]:
            values = [w[key] for w in window if key in w]
            record[key] = values[-1] if key == "lr" else sum(values) / len(values)
        elapsed = time.perf_counter() - self._start
        per_iter = elapsed / max(1, ctx.iteration - ctx.start_iter)
        record["eta_seconds"] = round(per_iter * (ctx.max_iter - ctx.iteration), 1)
        self.metrics.write(record)


class EvalHook(HookBase):
    """Evaluates every `period` iterations (0: only at the end) and writes an ``eval`` line.

    (``train.eval_period: never`` switches evaluation off: `default_hooks` adds no EvalHook.)

    Args:
        evaluate_fn: model -> {metric name: value}; run on rank 0 in eval mode, without
            gradients and without touching the RNG streams (so resumes stay exact).
        metrics: where the results go.
        period: iterations between evaluations.
    """

    def __init__(self, evaluate_fn: Callable[[nn.Module], dict[str, float]], metrics, *, period: int):
        self.evaluate_fn = evaluate_fn
        self.metrics = metrics
        self.period = period
        self.last_results: dict[str, float] | None = None

    def after_step(self, ctx: TrainContext) -> None:
        if self.period and ctx.iteration % self.period == 0 and ctx.iteration < ctx.max_iter:
            self._evaluate(ctx)

    def after_train(self, ctx: TrainContext) -> None:
        self._evaluate(ctx)

    def _evaluate(self, ctx: TrainContext) -> None:
        if ctx.dist.is_main:
            was_training = ctx.model.training
            ctx.model.eval()
            with preserved_rng(), torch.no_grad():
                results = self.evaluate_fn(ctx.model)
            ctx.model.train(was_training)
            self.last_results = {k: float(v) for k, v in results.items()}
            if self.metrics is not None:
                self.metrics.write({"iteration": ctx.iteration, "eval": self.last_results})
            log_main(ctx, f"iteration {ctx.iteration}: eval " + _format(self.last_results))
        du.barrier()


class LossCurvePlotter(HookBase):
    """Draws ``loss_curve.png`` (one subplot per loss, plus lr) from metrics.jsonl.

    Drawing costs about a second, so it redraws at a logging or checkpoint step only when
    `min_interval_s` seconds have passed since the last drawing, and always at the end.
    """

    def __init__(self, metrics_path, out_path, *, min_interval_s: float = 30.0):
        self.metrics_path = Path(metrics_path)
        self.out_path = Path(out_path)
        self.min_interval_s = min_interval_s
        self._last = time.monotonic()

    def after_step(self, ctx: TrainContext) -> None:
        tcfg = ctx.config.train
        due = ctx.iteration % tcfg.log_period == 0 or ctx.iteration % tcfg.checkpoint_period == 0
        if due and time.monotonic() - self._last > self.min_interval_s:
            self.draw()

    def after_train(self, ctx: TrainContext) -> None:
        self.draw()

    def draw(self) -> None:
        self._last = time.monotonic()
        records = read_metrics(self.metrics_path)
        if any("total_loss" in r for r in records):
            plot_loss_curves(records, self.out_path)


def plot_loss_curves(records: list[dict], out_path) -> None:
    """One subplot per ``loss_*`` key, total_loss, lr and (if any) eval AP against the iteration.

    Args:
        records: metrics.jsonl records; training lines have ``total_loss``, eval lines ``eval``.
        out_path: the PNG, written atomically.
    """
    fig = loss_curve_figure(records)
    with atomic_open(out_path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)


# Up to this many logged points, each is drawn as a marker too: a short run (even one logged
# point, which a line alone does not show) stays visible; longer curves stay uncluttered.
MARKER_MAX_POINTS = 60


def loss_curve_figure(records: list[dict]):
    """The `plot_loss_curves` figure (a matplotlib `Figure`; no pyplot state)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, no display needed

    train = [r for r in records if "total_loss" in r]
    evals = [r for r in records if isinstance(r.get("eval"), dict)]
    marker = "o" if len(train) <= MARKER_MAX_POINTS else None
    keys = sorted(k for k in train[0] if k.startswith("loss_")) + ["total_loss", "lr"]
    iters = [r["iteration"] for r in train]
    num_panels = len(keys) + (1 if evals else 0)
    cols = min(3, num_panels)
    rows = math.ceil(num_panels / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax, key in zip(axes, keys):
        ys = [r.get(key, float("nan")) for r in train]
        ax.plot(iters, ys, lw=1.2, marker=marker, ms=3)
        _style(ax, key)
        if "loss" in key and min(ys) > 0 and max(ys) > 20 * min(ys):
            ax.set_yscale("log")  # only when the loss spans more than about a decade
    if evals:
        ax = axes[len(keys)]
        for name in ("AP", "AP50"):
            ax.plot([r["iteration"] for r in evals], [r["eval"].get(name, float("nan")) for r in evals],
                    marker="o", lw=1.2, label=name)
        ax.set_xlim(0, max(iters[-1], evals[-1]["iteration"]) * 1.05)
        ax.legend(fontsize=8)
        _style(ax, "eval (valid split)")
    for ax in axes[num_panels:]:
        ax.set_visible(False)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.92, wspace=0.3, hspace=0.55)
    return fig


def _style(ax, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("iteration", fontsize=8)
    ax.grid(alpha=0.3)


class ProgressBar(HookBase):
    """A tqdm bar on rank 0 with ETA and the latest losses."""

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self.bar = None

    def before_train(self, ctx: TrainContext) -> None:
        if self.enabled and ctx.dist.is_main:
            from tqdm import tqdm

            self.bar = tqdm(total=ctx.max_iter, initial=ctx.start_iter, desc="train", dynamic_ncols=True)

    def after_step(self, ctx: TrainContext) -> None:
        if self.bar is not None:
            shown = {k.removeprefix("loss_"): v for k, v in ctx.step_metrics.items() if "loss" in k}
            lr = ctx.step_metrics.get("lr", 0.0)
            self.bar.set_postfix_str(f"{_format(shown)} lr={lr:.2e}", refresh=False)
            self.bar.update(1)

    def after_train(self, ctx: TrainContext) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _format(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in values.items())


def log_main(ctx: TrainContext, message: str) -> None:
    """Print on rank 0 without breaking the progress bar."""
    if ctx.dist.is_main:
        from tqdm import tqdm

        tqdm.write(f"[streamvis train] {message}")
