"""The training loop on a toy model: losses fall, exact resume, NaN stop, metrics and curve files."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from streamvis.config import ExperimentConfig, SolverConfig, TrainConfig, load_config
from streamvis.engine.checkpoint import load_checkpoint
from streamvis.engine.hooks import HookBase, read_metrics
from streamvis.engine.train import LossNotFiniteError, derive_seed, train


@dataclass(frozen=True)
class ToyModelConfig:
    """Stands in for a method config (models/build.py); `train` only reads ``method``."""

    method: str = "toy"
    width: int = 4
    dropout: float = 0.25


@dataclass(frozen=True)
class ToyDataConfig:
    """Stands in for data.loader.DataConfig."""

    image_size: int = 8


class ToyModel(nn.Module):
    """conv -> GroupNorm -> linear with dropout (so the RNG state matters); two named losses."""

    def __init__(self, cfg: ToyModelConfig):
        super().__init__()
        self.conv = nn.Conv2d(3, cfg.width, 3, padding=1)
        self.norm = nn.GroupNorm(2, cfg.width)
        self.head = nn.Linear(cfg.width, 2)
        self.dropout = cfg.dropout

    def loss(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.norm(self.conv(batch)).relu().mean(dim=(2, 3))  # (B, width)
        feats = nn.functional.dropout(feats, self.dropout, training=self.training)
        out = self.head(feats)  # (B, 2)
        target = batch.mean(dim=(1, 2, 3))  # (B,)
        return {"loss_a": (out[:, 0] - target).pow(2).mean(), "loss_b": (out[:, 1] - 1).pow(2).mean()}


class ToyLoader:
    """Infinite batches; sample i of global batch t depends only on (seed, t, i)."""

    def __init__(self, cfg, *, batch_size, rank, world_size, start_iter):
        self.seed, self.size = cfg.seed, cfg.data.image_size
        self.batch_size, self.rank, self.t = batch_size, rank, start_iter

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        first = self.rank * self.batch_size
        samples = []
        for i in range(first, first + self.batch_size):
            g = torch.Generator().manual_seed(derive_seed(self.seed, self.t, i))
            samples.append(torch.randn(3, self.size, self.size, generator=g) + 0.5)
        self.t += 1
        return torch.stack(samples)  # (B, 3, S, S)


def toy_config(tmp_path, plot: bool = False, log_period: int = 1, **solver) -> ExperimentConfig:
    solver_cfg = SolverConfig(**{
        "base_lr": 0.05, "steps": (6,), "warmup_iters": 2, "warmup_factor": 0.1, "max_iter": 8,
        "ims_per_batch": 4, **solver,
    })
    train_cfg = TrainConfig(checkpoint_period=3, keep_last=2, log_period=log_period, device="cpu",
                            progress_bar=False, plot_loss_curve=plot)
    return ExperimentConfig(
        model=ToyModelConfig(), data=ToyDataConfig(), solver=solver_cfg, train=train_cfg, seed=3,
        output_dir=str(tmp_path),
    )


def run_toy(cfg, **kwargs):
    return train(cfg, build_model=lambda c: ToyModel(c.model), build_loader=ToyLoader, **kwargs)


def loss_lines(output_dir) -> list[dict]:
    return [r for r in read_metrics(output_dir / "metrics.jsonl") if "total_loss" in r]


class Interrupt(Exception):
    pass


class InterruptAt(HookBase):
    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_step(self, ctx):
        if ctx.iteration == self.iteration:
            raise Interrupt


def test_exact_resume_matches_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    full = toy_config(tmp_path / "full")
    run_toy(full)
    part = toy_config(tmp_path / "part")
    with pytest.raises(Interrupt):  # dies after iteration 5; the last checkpoint is at 3
        run_toy(part, extra_hooks=[InterruptAt(5)])
    assert [r["iteration"] for r in loss_lines(tmp_path / "part")] == [1, 2, 3, 4, 5]
    run_toy(part, resume=True)
    lines_full, lines_part = loss_lines(tmp_path / "full"), loss_lines(tmp_path / "part")
    assert [r["iteration"] for r in lines_part] == list(range(1, 9))  # 4 and 5 were redone, not doubled
    for a, b in zip(lines_full, lines_part):
        assert (a["loss_a"], a["loss_b"], a["lr"]) == (b["loss_a"], b["loss_b"], b["lr"])
    final_full = load_checkpoint(tmp_path / "full" / "model_final.pth")
    final_part = load_checkpoint(tmp_path / "part" / "model_final.pth")
    assert final_full["iteration"] == final_part["iteration"] == 8
    for key, value in final_full["model"].items():
        assert torch.equal(value, final_part["model"][key]), key


def test_resume_without_restoring_rng_would_differ(tmp_path):
    """Guards the resume test: dropout makes the losses depend on the restored RNG state."""
    torch.set_num_threads(1)
    cfg = toy_config(tmp_path / "a")
    run_toy(cfg)
    reseeded = dataclasses.replace(cfg, seed=4, output_dir=str(tmp_path / "b"))
    run_toy(reseeded)
    assert loss_lines(tmp_path / "a")[0]["loss_a"] != loss_lines(tmp_path / "b")[0]["loss_a"]


def test_training_lowers_losses_and_writes_outputs(tmp_path):
    torch.set_num_threads(1)
    cfg = toy_config(tmp_path, plot=True, max_iter=30, steps=(25,))
    cfg = dataclasses.replace(cfg, model=ToyModelConfig(dropout=0.0))
    result = run_toy(cfg)
    lines = loss_lines(tmp_path)
    assert len(lines) == 30 and result.iteration == 30
    for key in ("loss_a", "loss_b"):
        first = sum(r[key] for r in lines[:5]) / 5
        last = sum(r[key] for r in lines[-5:]) / 5
        assert last < 0.5 * first, (key, first, last)
    assert lines[0]["lr"] == pytest.approx(0.05 * 0.1)  # warm-up starts at warmup_factor
    assert lines[5]["lr"] == pytest.approx(0.05) and lines[-1]["lr"] == pytest.approx(0.005)
    files = sorted(p.name for p in tmp_path.iterdir())
    # keep_last=2 periodic checkpoints (27 and 24), the final one, config, metrics and the curve
    assert files == ["checkpoints.json", "config.yaml", "last_checkpoint", "loss_curve.png", "metrics.jsonl",
                     "model_0000024.pth", "model_0000027.pth", "model_final.pth"]
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = load_checkpoint(tmp_path / "model_final.pth")
    assert final["config"] == {"method": "toy", "width": 4, "dropout": 0.0}
    assert (final["method"], final["format"], final["format_version"]) == ("toy", "streamvis-weights", 2)
    assert final["experiment"]["solver"]["max_iter"] == 30


def test_nan_loss_stops_with_iteration_and_key(tmp_path):
    torch.set_num_threads(1)
    cfg = toy_config(tmp_path)

    class NanAfter(ToyModel):
        def loss(self, batch):
            losses = super().loss(batch)
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 5:
                losses["loss_b"] = losses["loss_b"] * float("nan")
            return losses

    with pytest.raises(LossNotFiniteError, match=r"iteration 5: loss 'loss_b' is nan.*model_0000003\.pth"):
        train(cfg, build_model=lambda c: NanAfter(c.model), build_loader=ToyLoader)
    before = load_checkpoint(tmp_path / "model_0000003.pth")
    assert before["iteration"] == 3 and not (tmp_path / "model_final.pth").exists()


def test_eval_hook_writes_eval_lines_without_shifting_rng(tmp_path):
    torch.set_num_threads(1)
    calls = []

    def evaluate_fn(model):
        calls.append(model.training)
        torch.rand(10)  # must not change the training's random stream
        return {"AP": 0.5}

    cfg = toy_config(tmp_path / "eval")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_period=4))
    run_toy(cfg, evaluate_fn=evaluate_fn)
    run_toy(toy_config(tmp_path / "plain"))
    assert calls == [False, False]  # at 4 and at the end (8), in eval mode
    evals = [r for r in read_metrics(tmp_path / "eval" / "metrics.jsonl") if "eval" in r]
    assert evals == [{"iteration": 4, "eval": {"AP": 0.5}}, {"iteration": 8, "eval": {"AP": 0.5}}]
    assert loss_lines(tmp_path / "eval") == [
        {**r, "time": a["time"], "data_time": a["data_time"], "eta_seconds": a["eta_seconds"]}
        for r, a in zip(loss_lines(tmp_path / "plain"), loss_lines(tmp_path / "eval"))
    ]


def test_saved_config_reloads_identically(tmp_path):
    cfg = toy_config(tmp_path, max_iter=1)
    run_toy(cfg)
    text = (tmp_path / "config.yaml").read_text()
    assert "base_lr: 0.05" in text and "width: 4" in text
    data = json.loads(json.dumps(load_checkpoint(tmp_path / "model_final.pth")["experiment"]))
    assert data["train"]["checkpoint_period"] == 3 and data["seed"] == 3
    assert load_config(tmp_path / "config.yaml", cls=_Experiment).solver == cfg.solver


@dataclass(frozen=True)
class _Experiment:
    model: ToyModelConfig = dataclasses.field(default_factory=ToyModelConfig)
    data: ToyDataConfig = dataclasses.field(default_factory=ToyDataConfig)
    solver: SolverConfig = dataclasses.field(default_factory=SolverConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    seed: int = 0
    output_dir: str = ""


def test_loss_curve_has_one_panel_per_loss_and_eval(tmp_path):
    from PIL import Image

    from streamvis.engine.hooks import plot_loss_curves

    records = [{"iteration": i, "loss_a": 1.0 / i, "loss_b": 2.0 / i, "loss_c": 1.0, "loss_d": 0.0,
                "total_loss": 4.0 / i, "lr": 0.1} for i in range(1, 6)]
    plot_loss_curves(records, tmp_path / "losses.png")  # 6 panels: 3 columns x 2 rows
    evals = [{"iteration": 5, "eval": {"AP": 0.1, "AP50": 0.2}}]
    plot_loss_curves(records + evals, tmp_path / "with_eval.png")  # + AP/AP50 panel: 3 rows
    assert Image.open(tmp_path / "losses.png").size == (1134, 540)  # 3 x 4.2 in, 2 x 3.0 in at 90 dpi
    assert Image.open(tmp_path / "with_eval.png").size == (1134, 810)


def test_init_weights_go_through_the_backbone_loader(tmp_path, monkeypatch):
    import streamvis.models.imagenet_weights as backbone_module
    from streamvis.errors import ConfigError

    calls = []

    def fake_loader(backbone, path):
        calls.append((type(backbone).__name__, str(path)))
        with torch.no_grad():
            backbone.weight.fill_(0.5)

    monkeypatch.setattr(backbone_module, "load_imagenet_backbone", fake_loader)
    weights = tmp_path / "R-18.pkl"
    weights.write_bytes(b"x")
    cfg = toy_config(tmp_path / "run", max_iter=1)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_weights=str(weights)))
    seen = []

    def build(c):
        model = ToyModel(c.model)
        model.backbone = model.conv
        seen.append(model)
        return model

    train(cfg, build_model=build, build_loader=ToyLoader, extra_hooks=[_RecordWeights(seen)])
    assert calls == [("Conv2d", str(weights))]
    assert seen[1] == 0.5  # loaded before the first step
    no_file = dataclasses.replace(cfg.train, init_weights=str(tmp_path / "no.pkl"))
    missing = dataclasses.replace(cfg, train=no_file, output_dir=str(tmp_path / "run2"))
    with pytest.raises(ConfigError, match=r"no\.pkl: train\.init_weights file not found"):
        train(missing, build_model=build, build_loader=ToyLoader)


class _RecordWeights(HookBase):
    def __init__(self, seen):
        self.seen = seen

    def before_train(self, ctx):
        self.seen.append(ctx.model.conv.weight.flatten()[0].item())


def test_progress_bar_shows_losses_and_eta(tmp_path, capsys):
    cfg = toy_config(tmp_path, max_iter=4)
    run_toy(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress_bar=True)))
    err = capsys.readouterr().err.replace("\r", "\n")
    last = [line for line in err.splitlines() if line.startswith("train:")][-1]
    assert "4/4" in last and "<00:00" in last  # done, with the ETA column
    assert "a=" in last and "b=" in last and "total_loss=" in last and "lr=" in last


class SignalAt(HookBase):
    """Sends this process `signum` after iteration `iteration` (as Ctrl-C or `kill` would)."""

    def __init__(self, iteration: int, signum: int):
        self.iteration, self.signum = iteration, signum

    def after_step(self, ctx):
        if ctx.iteration == self.iteration:
            import os

            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_signal_saves_current_iteration_and_resume_is_exact(tmp_path, signame, capsys):
    import signal

    from streamvis.engine.train import TrainingInterrupted

    torch.set_num_threads(1)
    signum = getattr(signal, signame)
    full = toy_config(tmp_path / "full", log_period=3)
    run_toy(full)
    part = toy_config(tmp_path / "part", log_period=3)
    previous = signal.getsignal(signum)
    with pytest.raises(TrainingInterrupted) as stop:  # iteration 5: not a checkpoint (3) nor a log (3) step
        run_toy(part, extra_hooks=[SignalAt(5, signum)])
    assert signal.getsignal(signum) is previous  # the handler is restored
    assert stop.value.exit_code == 128 + signum
    assert stop.value.checkpoint == tmp_path / "part" / "model_0000005.pth"
    assert stop.value.command == f"streamvis train --resume --output-dir {tmp_path / 'part'}"
    assert f"{signame}: stopped after iteration 5" in str(stop.value)
    assert stop.value.command in str(stop.value)
    assert f"{signame} received: finishing this iteration" in capsys.readouterr().err
    assert load_checkpoint(stop.value.checkpoint)["iteration"] == 5
    run_toy(part, resume=True)
    lines_full, lines_part = loss_lines(tmp_path / "full"), loss_lines(tmp_path / "part")
    assert [r["iteration"] for r in lines_part] == [3, 6, 8]  # the window 4-6 spans the interruption
    for a, b in zip(lines_full, lines_part, strict=True):
        assert (a["loss_a"], a["loss_b"], a["lr"]) == (b["loss_a"], b["loss_b"], b["lr"])
    final_full = load_checkpoint(tmp_path / "full" / "model_final.pth")["model"]
    final_part = load_checkpoint(tmp_path / "part" / "model_final.pth")["model"]
    assert all(torch.equal(final_full[k], final_part[k]) for k in final_full)


def toy_config_with(tmp_path, **train):
    cfg = toy_config(tmp_path)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def test_training_into_a_folder_with_a_run_is_refused_unless_overwrite(tmp_path):
    from streamvis.engine.run_folder import RunExistsError

    cfg = toy_config(tmp_path, max_iter=2)
    run_toy(cfg)
    before = (tmp_path / "model_final.pth").read_bytes()
    (tmp_path / "notes.txt").write_text("not ours")
    expected = (r"already holds a training run \(checkpoints\.json, config\.yaml.*--resume --output-dir .*"
                r"--output-dir NEW_FOLDER.*--overwrite")
    with pytest.raises(RunExistsError, match=expected):
        run_toy(dataclasses.replace(cfg, seed=5))
    assert (tmp_path / "model_final.pth").read_bytes() == before  # untouched
    shorter = dataclasses.replace(cfg, seed=5, solver=dataclasses.replace(cfg.solver, max_iter=1))
    run_toy(shorter, overwrite=True)
    assert load_checkpoint(tmp_path / "model_final.pth")["iteration"] == 1
    assert [r["iteration"] for r in loss_lines(tmp_path)] == [1]  # the old run's lines are gone
    assert (tmp_path / "notes.txt").read_text() == "not ours"


def test_resume_refuses_a_config_change_by_name_and_allows_harmless_keys(tmp_path, capsys):
    from streamvis.engine.run_folder import ResumeConfigError

    cfg = toy_config(tmp_path, max_iter=4)
    run_toy(cfg)
    changed = dataclasses.replace(cfg, solver=dataclasses.replace(cfg.solver, base_lr=0.1))
    with pytest.raises(ResumeConfigError, match=r"solver\.base_lr: 0\.05 -> 0\.1"):
        run_toy(changed, resume=True)
    longer = dataclasses.replace(cfg, solver=dataclasses.replace(cfg.solver, max_iter=6),
                                 train=dataclasses.replace(cfg.train, log_period=2))
    run_toy(longer, resume=True)
    out = capsys.readouterr().out
    assert "--resume: solver.max_iter: 4 -> 6 (allowed" in out and "train.log_period: 1 -> 2" in out
    assert load_checkpoint(tmp_path / "model_final.pth")["iteration"] == 6


def test_eval_period_never_switches_evaluation_off(tmp_path):
    calls = []
    cfg = toy_config_with(tmp_path, eval_period="never")
    run_toy(cfg, evaluate_fn=lambda model: calls.append(1) or {"AP": 0.0})
    assert calls == [] and not [r for r in read_metrics(tmp_path / "metrics.jsonl") if "eval" in r]
    assert "eval_period: never" in (tmp_path / "config.yaml").read_text()
    with pytest.raises(Exception, match=r"config 'train\.eval_period': no type fits 'sometimes'"):
        load_config(None, ["train.eval_period=sometimes"])


def test_short_run_reports_schedule_outside_max_iter(tmp_path, capsys):
    cfg = toy_config(tmp_path, max_iter=2, warmup_iters=5, steps=(1, 6))
    run_toy(cfg)
    out = capsys.readouterr().out
    assert "solver.warmup_iters=5 >= solver.max_iter=2: the run ends inside the warm-up" in out
    assert "solver.steps [6] fall at or after solver.max_iter=2 and never apply" in out
    assert "scale_schedule=true" in out


def test_loss_curve_marks_points_so_one_point_shows(tmp_path):
    from streamvis.engine.hooks import MARKER_MAX_POINTS, loss_curve_figure, plot_loss_curves

    one = [{"iteration": 1, "loss_a": 0.5, "total_loss": 0.5, "lr": 0.1}]
    fig = loss_curve_figure(one)
    assert fig.axes[0].lines[0].get_marker() == "o" and list(fig.axes[0].lines[0].get_xdata()) == [1]
    plot_loss_curves(one, tmp_path / "one.png")
    assert (tmp_path / "one.png").read_bytes()[:4] == b"\x89PNG"
    many = [{**one[0], "iteration": i} for i in range(1, MARKER_MAX_POINTS + 2)]
    assert loss_curve_figure(many).axes[0].lines[0].get_marker() in ("None", None, "")


class GatherModel(ToyModel):
    """ToyModel plus a loss through advanced indexing of a table: its backward is ``index_put_``
    with accumulation over 640k elements, which CPU torch parallelises with atomic float adds
    (order depends on thread timing) unless deterministic algorithms are on."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.table = nn.Parameter(torch.linspace(-1, 1, 512 * 16).reshape(512, 16))
        g = torch.Generator().manual_seed(0)
        self.register_buffer("rows", torch.randint(0, 512, (40000,), generator=g))
        self.register_buffer("scale", torch.rand(40000, 16, generator=g))

    def loss(self, batch):
        losses = super().loss(batch)
        gathered = self.table[self.rows] * self.scale  # (40000, 16)
        return {**losses, "loss_gather": (gathered * batch.mean()).sin().pow(2).mean()}


class RecordDeterminism(HookBase):
    def __init__(self, seen):
        self.seen = seen

    def before_train(self, ctx):
        self.seen.append(torch.are_deterministic_algorithms_enabled())


def test_two_fresh_runs_are_bitwise_equal_on_two_threads(tmp_path):
    """The thread count users get on a 2-core machine (conftest sets 1 for speed)."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []
    try:
        finals = []
        for name in ("a", "b"):
            cfg = toy_config(tmp_path / name, max_iter=6)
            train(cfg, build_model=lambda c: GatherModel(c.model), build_loader=ToyLoader,
                  extra_hooks=[RecordDeterminism(seen)])
            finals.append(load_checkpoint(tmp_path / name / "model_final.pth")["model"])
    finally:
        torch.set_num_threads(previous_threads)
    assert seen == [True, True] and not torch.are_deterministic_algorithms_enabled()  # restored after
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
    lines_a, lines_b = loss_lines(tmp_path / "a"), loss_lines(tmp_path / "b")
    assert [r["loss_gather"] for r in lines_a] == [r["loss_gather"] for r in lines_b]
