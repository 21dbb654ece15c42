"""Kill ``streamvis train`` with SIGKILL at random moments, resume, and compare with an uninterrupted run.

Used by ``tests/reliability/test_kill9_train.py`` (two kills; ``benchmarks/bench_kill_resume.py`` measures
the same property at five moments). Everything runs as child processes (``python -m streamvis``),
on CPU, on a tiny synthetic set (2 videos of 4 frames, 48x64) with a tiny CrossVIS and a checkpoint
at every iteration, so a kill often lands while a checkpoint is being written.

A kill moment is "iteration k has been logged, plus d seconds" (k and d drawn from a seeded RNG),
so kills land at any phase: data loading, the step, checkpoint writing, metrics writing. After
each kill the run restarts with ``--resume``; the last restart runs to the end. The comparison is
bitwise: every tensor of ``model_final.pth`` and every logged loss of every iteration (the last
record of each iteration, since iterations after the newest checkpoint are logged again).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_ITER = 8
CONFIG = """\
model:
  preset: crossvis_r18_small
  num_classes: 2
  num_identities: 0
  freeze_at: 0
  fpn_channels: 32
  head_channels: 32
  head_num_convs: 1
  mask_branch_channels: 8
  mask_branch_num_convs: 1
  reid_dim: 8
  test_short_side: 48
  test_max_size: 64
data:
  train_json: {data}/instances.json
  train_images: {data}/JPEGImages
  short_sides: [48]
  max_size: 64
  num_workers: 0
solver:
  base_lr: 0.01
  steps: [{step}]
  warmup_iters: 2
  max_iter: {max_iter}
  ims_per_batch: 2
train:
  checkpoint_period: 1
  keep_last: 2
  log_period: 1
  eval_period: 0
  amp: false
  device: cpu
  progress_bar: false
  plot_loss_curve: false
seed: 0
"""
PROCESS_TIME_LIMIT_S = 300


@dataclass
class KillReport:
    """What happened: the kill moments, how each process ended, and the comparison."""

    moments: list[tuple[int, float]] = field(default_factory=list)  # (after iteration, + seconds)
    killed_at: list[int] = field(default_factory=list)  # the last iteration logged before each kill
    restarts: int = 0
    weights_equal: bool = False
    losses_equal: bool = False
    differences: list[str] = field(default_factory=list)


def _env() -> dict:
    return dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"
    )


def _streamvis(*argv: str) -> list[str]:
    return [sys.executable, "-m", "streamvis", *argv]


def prepare(workdir: Path) -> Path:
    """Write the tiny synthetic data and the config under `workdir`; returns the config path."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    if not (data / "instances.json").exists():
        subprocess.run(
            _streamvis(
                "synth", "--out", str(data), "--videos", "2", "--seed", "0", "--size", "48x64", "--frames",
                "4", "--classes", "2"
            ),
            check=True,
            capture_output=True,
            env=_env(),
            timeout=PROCESS_TIME_LIMIT_S,
        )
    config = workdir / "tiny.yaml"
    config.write_text(CONFIG.format(data=data, step=MAX_ITER - 1, max_iter=MAX_ITER))
    return config


def train(config: Path, output_dir: Path) -> subprocess.CompletedProcess:
    """One uninterrupted ``streamvis train --resume`` run to the end."""
    return subprocess.run(
        _streamvis("train", "--config", str(config), "--output-dir", str(output_dir), "--resume"),
        capture_output=True, text=True, env=_env(), timeout=PROCESS_TIME_LIMIT_S
    )


def _logged_iteration(output_dir: Path) -> int:
    path = output_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    last = 0
    for line in path.read_text().splitlines():
        try:
            last = max(last, int(json.loads(line).get("iteration", 0)))
        except (ValueError, AttributeError):
            continue  # a line being written
    return last


def train_with_kills(config: Path, output_dir: Path, moments: list[tuple[int, float]], report: KillReport):
    """Start training; at each moment SIGKILL it and restart with --resume; finally run to the end."""
    for after_iteration, delay in moments:
        process = subprocess.Popen(
            _streamvis("train", "--config", str(config), "--output-dir", str(output_dir), "--resume"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
        )
        deadline = time.monotonic() + PROCESS_TIME_LIMIT_S
        while process.poll() is None and _logged_iteration(output_dir) < after_iteration:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        time.sleep(delay)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        report.killed_at.append(_logged_iteration(output_dir))
        report.restarts += 1
    return train(config, output_dir)


def _losses(output_dir: Path) -> dict[int, dict[str, float]]:
    """iteration -> the loss_* values of its last record in metrics.jsonl."""
    losses = {}
    for line in (output_dir / "metrics.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        if "iteration" in record:
            losses[record["iteration"]] = {k: v for k, v in record.items() if k.startswith("loss_")}
    return losses


def compare(reference: Path, resumed: Path, report: KillReport) -> None:
    """Bitwise comparison of final weights and per-iteration losses; fills `report`."""
    import torch

    ref = torch.load(reference / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    got = torch.load(resumed / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    report.weights_equal = ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    if not report.weights_equal:
        report.differences += [k for k in ref if k not in got or not torch.equal(ref[k], got[k])][:5]
    ref_losses, got_losses = _losses(reference), _losses(resumed)
    report.losses_equal = ref_losses == got_losses and len(ref_losses) == MAX_ITER
    if not report.losses_equal:
        report.differences += [
            f"iteration {i}: {ref_losses.get(i)} != {got_losses.get(i)}"
            for i in range(1, MAX_ITER + 1)
            if ref_losses.get(i) != got_losses.get(i)
        ][:5]


def run(workdir: Path, *, kills: int, seed: int) -> KillReport:
    """The whole experiment: reference run, `kills` random kills with resumes, bitwise comparison."""
    config = prepare(workdir)
    reference = workdir / "reference"
    if not (reference / "model_final.pth").exists():
        done = train(config, reference)
        if done.returncode != 0:
            raise RuntimeError(f"the reference run failed: {done.stderr[-2000:]}")
    rng = random.Random(seed)
    report = KillReport(
        moments=sorted((rng.randint(0, MAX_ITER - 3), round(rng.uniform(0.0, 0.4), 3)) for _ in range(kills))
    )
    resumed = workdir / f"killed_{seed}"
    done = train_with_kills(config, resumed, report.moments, report)
    if done.returncode != 0:
        report.differences.append(f"the final resume failed: {done.stderr[-1500:]}")
        return report
    compare(reference, resumed, report)
    return report
