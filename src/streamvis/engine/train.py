"""The training loop: SGD + warm-up/step schedule, AMP on CUDA, DDP, checkpoints, exact resume.

`train(cfg)` builds everything from an `ExperimentConfig` and runs `run_training`, the one
explicit loop; checkpointing, logging, evaluation and the progress bar are hooks (hooks.py).

Run folders (run_folder.py, `prepare_run_folder`): training into a folder that holds an earlier run
is refused unless ``resume`` (continue it, with its saved config.yaml) or ``overwrite`` (delete its
files first).

Interruption (interrupt.py): SIGINT (Ctrl-C) or SIGTERM lets the current iteration finish, saves a
checkpoint of it and raises `TrainingInterrupted`, whose message is the exact command that resumes;
a second signal quits at once. A SIGKILL loses at most the iterations since the last checkpoint: files are
written atomically and every checkpoint's size and SHA-256 are recorded, so a resume skips a
checkpoint torn afterwards (with a warning) and uses the previous complete one.

Exact resume: batch t on rank r is a pure function of (seed, t, r) (the data loader's contract),
and a checkpoint stores the model, optimizer, scheduler, AMP scaler, every rank's RNG states and
the logging window. Restarting from it with ``resume=True`` therefore repeats the uninterrupted
run: on CPU the per-iteration losses and the final weights are bitwise equal, provided both runs
use the same number of intra-op threads (`torch.get_num_threads()`: reductions are split by
thread) and ``train.deterministic`` is on (the default: without it, the multi-threaded CPU
backward of advanced indexing adds with atomics in a timing-dependent order).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamvis.config import ExperimentConfig, save_config
from streamvis.engine import distributed as du
from streamvis.engine.checkpoint import (
    Checkpointer,
    load_checkpoint,
    preserved_rng,
    restore_rng_state,
)
from streamvis.engine.hooks import (
    LOSS_CURVE_FILE,
    METRICS_FILE,
    CheckpointHook,
    EvalHook,
    HookBase,
    LossCurvePlotter,
    MetricsFile,
    MetricsWriter,
    ProgressBar,
    TrainContext,
    log_main,
)
from streamvis.engine.interrupt import (
    StopRequest,
    TrainingInterrupted,  # noqa: F401  (callers import it from here)
    stop_with_checkpoint,
)
from streamvis.engine.run_folder import CONFIG_FILE, prepare_run_folder
from streamvis.engine.solver import build_lr_scheduler, build_optimizer, schedule_notes
from streamvis.errors import ConfigError, StreamvisError

ModelBuilder = Callable[[ExperimentConfig], nn.Module]
# (cfg, *, batch_size, rank, world_size, start_iter) -> infinite iterator of batches (PairBatch)
LoaderBuilder = Callable[..., Iterator]
EvaluateFn = Callable[[nn.Module], dict]


class LossNotFiniteError(StreamvisError):
    """A loss became NaN or infinite; training stopped and the last good checkpoint stays."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished run left behind."""

    output_dir: Path
    final_checkpoint: Path
    iteration: int
    last_metrics: dict[str, float]


class LossForward(nn.Module):
    """Makes ``model.loss(batch)`` the forward, so DistributedDataParallel sees the call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.model.loss(batch)


def derive_seed(*values: int) -> int:
    """A 31-bit seed mixed from several integers (seed, rank, ...) without collisions like s+r."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1)[0] & 0x7FFFFFFF)


def seed_all(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python's `random`."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def per_rank_batch_size(ims_per_batch: int, world_size: int) -> int:
    """Pairs per process; the global batch must split evenly over the processes."""
    if ims_per_batch % world_size:
        raise ConfigError(
            f"solver.ims_per_batch={ims_per_batch} is not divisible by the {world_size} processes; "
            f"use a multiple of {world_size}"
        )
    return ims_per_batch // world_size


def train(
    cfg: ExperimentConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    build_model: ModelBuilder | None = None,
    build_loader: LoaderBuilder | None = None,
    evaluate_fn: EvaluateFn | None = None,
    extra_hooks: Sequence[HookBase] = (),
) -> TrainResult:
    """Train `cfg` (one process, or one of the processes that torchrun started).

    Args:
        cfg: the experiment; ``cfg.output_dir`` receives checkpoints, metrics.jsonl,
            loss_curve.png and config.yaml.
        resume: continue from the newest complete checkpoint in ``cfg.output_dir`` (a fresh
            start when there is none). The run's saved config.yaml must agree with `cfg` except
            for the keys of `run_folder.RESUME_CHANGEABLE_KEYS`.
        overwrite: delete the files of an earlier run in ``cfg.output_dir`` first (without it,
            and without `resume`, such a folder is refused).
        build_model: cfg -> model with ``.loss(batch) -> dict of loss_* tensors`` (default: the
            model builder; tests pass toy models).
        build_loader: ``(cfg, *, batch_size, rank, world_size, start_iter)`` -> infinite batch
            iterator; batch t of rank r must depend only on (seed, t, r).
        evaluate_fn: model -> metrics, for periodic evaluation (default: the valid split of
            ``cfg.data`` when it has one, else no evaluation).
        extra_hooks: appended after the default hooks.

    Returns:
        A `TrainResult`.

    Raises:
        LossNotFiniteError: a loss became NaN/inf (names the iteration and the loss).
        RunExistsError: the folder holds a run and neither `resume` nor `overwrite` was given.
        ResumeConfigError: `resume` with a config that changes how the run trains.
        TrainingInterrupted: SIGINT/SIGTERM; a checkpoint of the current iteration was saved.
    """
    info = du.env_dist_info()
    device = du.resolve_device(cfg.train.device, info)
    if build_model is None:
        from streamvis.engine.builders import resolve_model_from_data

        cfg = resolve_model_from_data(cfg)
    own_group = info.distributed and not torch.distributed.is_initialized()
    du.init_distributed(info, device)
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(cfg, info, device, resume, overwrite, build_model, build_loader, evaluate_fn,
                      extra_hooks)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        if own_group:
            du.destroy_distributed()


def _train(cfg, info, device, resume, overwrite, build_model, build_loader, evaluate_fn, extra_hooks):
    batch_size = per_rank_batch_size(cfg.solver.ims_per_batch, info.world_size)
    output_dir = Path(cfg.output_dir)
    notes = prepare_run_folder(cfg, info, resume=resume, overwrite=overwrite)
    ctx = _setup(cfg, info, device, build_model or _default_model)
    for note in notes + schedule_notes(cfg.solver):
        log_main(ctx, note)
    checkpointer = Checkpointer(output_dir, keep_last=cfg.train.keep_last)
    latest = _latest_complete(ctx, checkpointer) if resume else None
    if latest is not None:
        _resume_from(ctx, latest)
    elif resume:
        log_main(ctx, f"--resume: no checkpoint in {output_dir}; starting from iteration 0")
    if ctx.dist.is_main:
        save_config(cfg, output_dir / CONFIG_FILE)
    if ctx.start_iter >= ctx.max_iter:
        log_main(ctx, f"already trained {ctx.start_iter} of {ctx.max_iter} iterations; nothing to do")
        return TrainResult(output_dir, checkpointer.latest() or latest, ctx.start_iter, {})
    with preserved_rng():  # creating a DataLoader iterator draws from the global torch RNG
        loader = (build_loader or _default_loader)(
            cfg, batch_size=batch_size, rank=info.rank, world_size=info.world_size, start_iter=ctx.start_iter
        )
    if cfg.train.eval_period == "never":
        evaluate_fn = None
    elif evaluate_fn is None:
        evaluate_fn = _default_evaluate_fn(cfg)
    hooks = default_hooks(ctx, checkpointer, evaluate_fn) + list(extra_hooks)
    run_training(ctx, _wrap_model(ctx), loader, hooks)
    return TrainResult(output_dir, output_dir / "model_final.pth", ctx.iteration, dict(ctx.step_metrics))


def _latest_complete(ctx: TrainContext, checkpointer: Checkpointer) -> Path | None:
    """`Checkpointer.latest_complete`, its warning about a torn checkpoint printed as a log line."""
    import warnings

    from streamvis.engine.checkpoint import CheckpointIntegrityWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointIntegrityWarning)
        latest = checkpointer.latest_complete()
    for warning in caught:
        if issubclass(warning.category, CheckpointIntegrityWarning):
            log_main(ctx, f"warning: {warning.message}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return latest


def _setup(cfg: ExperimentConfig, info: du.DistInfo, device: torch.device, build_model) -> TrainContext:
    """Build the model (same init on every rank), optimizer, scheduler and scaler."""
    seed_all(derive_seed(cfg.seed, 0))  # model init: identical on all ranks
    model = build_model(cfg)
    if cfg.train.init_weights:
        _load_init_weights(model, cfg.train.init_weights)
    model.to(device).train()
    optimizer = build_optimizer(model, cfg.solver)
    use_amp = cfg.train.amp and device.type == "cuda"
    ctx = TrainContext(
        config=cfg,
        model=model,
        optimizer=optimizer,
        scheduler=build_lr_scheduler(optimizer, cfg.solver),
        scaler=torch.amp.GradScaler(device.type, enabled=use_amp),
        device=device,
        dist=info,
        output_dir=Path(cfg.output_dir),
        max_iter=cfg.solver.max_iter,
    )
    seed_all(derive_seed(cfg.seed, 1, info.rank))  # training randomness: per rank
    return ctx


def _resume_from(ctx: TrainContext, path: Path) -> None:
    """Load a checkpoint into `ctx` (model, optimizer, scheduler, scaler, iteration, RNG)."""
    state = load_checkpoint(path)
    ctx.model.load_state_dict(state["model"])
    ctx.optimizer.load_state_dict(state["optimizer"])
    ctx.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler") and ctx.scaler.is_enabled():
        ctx.scaler.load_state_dict(state["scaler"])
    ctx.start_iter = ctx.iteration = int(state["iteration"])
    ctx.resumed_hook_states = dict(state.get("hooks") or {})
    rng = state.get("rng") or []
    if len(rng) == ctx.dist.world_size:
        restore_rng_state(rng[ctx.dist.rank])
    else:  # another process count
        seed_all(derive_seed(ctx.config.seed, 2, ctx.dist.rank, ctx.iteration))
        log_main(ctx, f"{path.name} was saved by {len(rng)} processes, now {ctx.dist.world_size}: "
                 "RNG re-seeded (the run continues deterministically, but not bit-exactly)")
    log_main(ctx, f"resumed from {path} at iteration {ctx.iteration}")


def _wrap_model(ctx: TrainContext) -> nn.Module:
    """The module the loop calls: ``LossForward(model)``, inside DDP when distributed."""
    module = LossForward(ctx.model)
    if not ctx.dist.distributed:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=ctx.config.train.find_unused_parameters
    )


def default_hooks(
    ctx: TrainContext, checkpointer: Checkpointer, evaluate_fn: EvaluateFn | None
) -> list[HookBase]:
    """Checkpointing, metrics, (evaluation), loss curve, progress bar; files only on rank 0."""
    tcfg = ctx.config.train
    main = ctx.dist.is_main
    metrics_path = ctx.output_dir / METRICS_FILE
    metrics = MetricsFile(metrics_path, truncate_after=ctx.start_iter) if main else None
    hooks: list[HookBase] = [
        CheckpointHook(checkpointer, period=tcfg.checkpoint_period),
        MetricsWriter(metrics, period=tcfg.log_period),
    ]
    if evaluate_fn is not None:
        hooks.append(EvalHook(evaluate_fn, metrics, period=tcfg.eval_period))
    if main and tcfg.plot_loss_curve:
        hooks.append(LossCurvePlotter(metrics_path, ctx.output_dir / LOSS_CURVE_FILE))
    hooks.append(ProgressBar(enabled=tcfg.progress_bar))
    return hooks


def run_training(ctx: TrainContext, model: nn.Module, loader: Iterator, hooks: Sequence[HookBase]) -> None:
    """The loop: before_train; per iteration before_step, `train_step`, after_step; after_train.

    `after_train` (final checkpoint, final evaluation) runs only when all iterations succeeded.
    SIGINT/SIGTERM (on every rank, or on one: the ranks agree each iteration) ends the loop after
    the current iteration with a checkpoint of it (`TrainingInterrupted`); on an error the last
    periodic checkpoint is where ``--resume`` continues.
    """
    ctx.hooks = list(hooks)
    for hook in hooks:
        state = ctx.resumed_hook_states.get(type(hook).__name__)
        if state is not None:
            hook.load_state_dict(state)
    stop = StopRequest()
    try:
        with stop.installed():
            for hook in hooks:
                hook.before_train(ctx)
            while ctx.iteration < ctx.max_iter:
                for hook in hooks:
                    hook.before_step(ctx)
                ctx.step_metrics = train_step(ctx, model, loader)
                ctx.iteration += 1
                for hook in hooks:
                    hook.after_step(ctx)
                if stop.agreed():
                    stop_with_checkpoint(ctx, hooks, stop.signal_number)
            for hook in hooks:
                hook.after_train(ctx)
    finally:
        for hook in hooks:
            if isinstance(hook, ProgressBar):
                hook.close()  # so that an error message is not glued to the bar


def train_step(ctx: TrainContext, model: nn.Module, loader: Iterator) -> dict[str, float]:
    """One SGD step on the next batch; returns the losses (averaged over ranks), lr and timings."""
    start = time.perf_counter()
    batch = next(loader)
    batch = batch.to(ctx.device) if hasattr(batch, "to") else batch
    data_time = time.perf_counter() - start
    use_amp = ctx.scaler.is_enabled()
    autocast = torch.autocast(ctx.device.type, dtype=torch.float16) if use_amp else nullcontext()
    with autocast:
        loss_dict = model(batch)
    total = sum(loss_dict.values())
    values = du.reduce_mean({**loss_dict, "total_loss": total})  # one all_reduce; same on all ranks
    check_finite(values, ctx)
    lr = ctx.optimizer.param_groups[0]["lr"]
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.scaler.scale(total).backward()
    if ctx.config.solver.clip_grad_norm is not None:
        ctx.scaler.unscale_(ctx.optimizer)
        nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.config.solver.clip_grad_norm)
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    ctx.scheduler.step()
    return {**values, "lr": lr, "time": time.perf_counter() - start, "data_time": data_time}


def check_finite(values: dict[str, float], ctx: TrainContext) -> None:
    """Stop with a clear error when a loss is NaN or infinite (before it reaches the weights)."""
    bad = [k for k, v in values.items() if k != "total_loss" and not np.isfinite(v)]
    bad = bad or [k for k, v in values.items() if not np.isfinite(v)]
    if not bad:
        return
    latest = Checkpointer(ctx.output_dir).latest()
    kept = f"the last good checkpoint is {latest}" if latest else "no checkpoint was written yet"
    raise LossNotFiniteError(
        f"iteration {ctx.iteration + 1}: loss '{bad[0]}' is {values[bad[0]]} (all: "
        + ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        + f"); training stopped and {kept}. Lower solver.base_lr, set solver.clip_grad_norm, "
        "or check the data, then continue with --resume."
    )


# ------------------------------------------------------------------------------------------------
# Defaults wired to the model, data and evaluation packages
# ------------------------------------------------------------------------------------------------


def _default_model(cfg: ExperimentConfig) -> nn.Module:
    from streamvis.models.build import build_model

    return build_model(cfg.model)


def _load_init_weights(model: nn.Module, path: str) -> None:
    from streamvis.engine.builders import load_init_weights

    load_init_weights(model, path)


def _default_loader(cfg: ExperimentConfig, *, batch_size: int, rank: int, world_size: int, start_iter: int):
    from streamvis.engine.builders import build_loader_from_config

    return build_loader_from_config(
        cfg, batch_size=batch_size, rank=rank, world_size=world_size, start_iter=start_iter
    )


def _default_evaluate_fn(cfg: ExperimentConfig) -> EvaluateFn | None:
    from streamvis.engine.builders import build_evaluate_fn

    return build_evaluate_fn(cfg)
