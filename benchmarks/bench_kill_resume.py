"""Kill -9 at random moments, resume, and compare bitwise with an uninterrupted run (issue 14 part 3).

A tiny CrossVIS run (ResNet-18 small, 2 generated videos at 64x96, 2 pairs per iteration, a
checkpoint after every iteration) is trained once without interruption. The same run is then
started, killed with SIGKILL at N random moments and resumed with ``--resume`` after each kill,
until it finishes. Each moment is drawn (seeded) as: after iteration k has been logged, wait a
random fraction of an iteration, or (every other moment) wait until a checkpoint's temporary file
appears, i.e. kill while a checkpoint is being written. Optionally the newest checkpoint is then
truncated, to check that the resume detects it and falls back to the previous complete one.

The result is bitwise equality of the final weights (``model_final.pth`` tensors) and of every
per-iteration loss in metrics.jsonl. Run::

    python benchmarks/bench_kill_resume.py --moments 5 --workdir /tmp/kill_resume

It prints one line per kill and the verdict; the exit status is 0 when all is identical.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOSS_PREFIX = "loss_"


@dataclass
class KillReport:
    """What happened at one kill."""

    moment: str  # "d s after checkpoint k" or "while writing the checkpoint after k"
    killed_at_iteration: int  # the newest recorded checkpoint when the process died
    temporary_files: list[str] = field(default_factory=list)  # half-written files left by the kill
    truncated: str | None = None  # the checkpoint cut short afterwards (to test the fallback)


def make_data(workdir: Path) -> Path:
    """Two generated videos of 3 frames at 64x96 (the training split); returns its folder."""
    out = workdir / "synth" / "train"
    if not (out / "instances.json").is_file():
        from streamvis.data.synthetic import SynthConfig, write_dataset

        config = SynthConfig(num_videos=2, seed=0, size=(64, 96), frames=(3, 3), num_classes=8)
        write_dataset(config, out, workers=1)
    return out


def train_argv(data: Path, out_dir: Path, max_iter: int) -> list[str]:
    """The `streamvis train` command line of the tiny run."""
    overrides = [
        f"data.train_json={data / 'instances.json'}", f"data.train_images={data / 'JPEGImages'}",
        "data.valid_json=null", "data.valid_images=null", "data.num_workers=0", "data.short_sides=[64]",
        "data.max_size=96", "model.num_identities=16", "solver.ims_per_batch=2", "solver.warmup_iters=2",
        f"solver.max_iter={max_iter}", "solver.steps=[4]", "train.checkpoint_period=1", "train.keep_last=2",
        "train.log_period=1", "train.progress_bar=false", "train.plot_loss_curve=false",
        "train.eval_period=never",
    ]
    config = REPO / "configs" / "synthetic_r18.yaml"
    argv = [sys.executable, "-m", "streamvis", "train", "--config", str(config), "--output-dir", str(out_dir)]
    for item in overrides:
        argv += ["--set", item]
    return argv


def resume_argv(out_dir: Path) -> list[str]:
    return [sys.executable, "-m", "streamvis", "train", "--resume", "--output-dir", str(out_dir)]


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def checkpointed_iteration(out_dir: Path) -> int:
    """The iteration of the newest checkpoint recorded in checkpoints.json (0 when none).

    Progress is read from there, not from metrics.jsonl: a resumed process first truncates
    metrics.jsonl, while a new record proves it has started training again.
    """
    from streamvis.engine.checkpoint import Checkpointer

    try:
        records = Checkpointer(out_dir).records()
    except Exception:  # noqa: BLE001 (read while being replaced: try again at the next poll)
        return 0
    return records[-1].iteration if records else 0


def temporary_files(out_dir: Path) -> set[str]:
    return {p.name for p in out_dir.glob(".model_*.tmp")} if out_dir.is_dir() else set()


def run_and_kill(argv, env, out_dir: Path, *, target: int, delay_s: float, during_write: bool,
                 log, timeout_s: float = 900) -> KillReport | None:
    """Start `argv`; SIGKILL it at the described moment. Returns None when it finished first.

    The moment: once the checkpoint of iteration `target` is recorded, either `delay_s` later or
    (`during_write`) as soon as a new checkpoint's temporary file appears.
    """
    stale = temporary_files(out_dir)
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=log, cwd=REPO)
    deadline = time.monotonic() + timeout_s
    moment = ""
    try:
        while not moment:
            if process.poll() is not None:
                return None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{argv}: no progress within {timeout_s} s")
            if checkpointed_iteration(out_dir) < target:
                time.sleep(0.02)
            elif not during_write:
                time.sleep(delay_s)
                moment = f"{delay_s:.2f} s after checkpoint {target}"
            elif temporary_files(out_dir) - stale:
                moment = f"while writing the checkpoint after {target}"
            else:
                time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return KillReport(moment, checkpointed_iteration(out_dir), sorted(temporary_files(out_dir) - stale))


def truncate_newest_checkpoint(out_dir: Path) -> str | None:
    """Cut the newest recorded checkpoint to half its size (a torn file); returns its name."""
    from streamvis.engine.checkpoint import Checkpointer

    records = Checkpointer(out_dir).records()
    if len(records) < 2:
        return None
    path = out_dir / records[-1].name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path.name


def compare_runs(reference: Path, resumed: Path) -> list[str]:
    """Differences between two finished runs: final tensors and per-iteration losses (empty: identical)."""
    import torch

    from streamvis.engine.checkpoint import load_checkpoint
    from streamvis.engine.hooks import read_metrics

    problems = []
    a = load_checkpoint(reference / "model_final.pth")["model"]
    b = load_checkpoint(resumed / "model_final.pth")["model"]
    different = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
    if different or set(a) != set(b):
        problems.append(f"final weights differ in {len(different)} tensors, e.g. {different[:3]}")
    lines_a = [r for r in read_metrics(reference / "metrics.jsonl") if "total_loss" in r]
    lines_b = [r for r in read_metrics(resumed / "metrics.jsonl") if "total_loss" in r]
    if [r["iteration"] for r in lines_a] != [r["iteration"] for r in lines_b]:
        problems.append(f"logged iterations differ: {[r['iteration'] for r in lines_b]}")
    for ra, rb in zip(lines_a, lines_b):
        la = {k: v for k, v in ra.items() if k.startswith(LOSS_PREFIX) or k in ("total_loss", "lr")}
        lb = {k: v for k, v in rb.items() if k.startswith(LOSS_PREFIX) or k in ("total_loss", "lr")}
        if la != lb:
            problems.append(f"iteration {ra['iteration']}: losses differ ({la} vs {lb})")
    return problems


def kill_resume_experiment(workdir: Path, *, moments: int, max_iter: int = 8, seed: int = 0,
                           threads: int = 2, truncate_once: bool = True,
                           verbose: bool = True) -> tuple[list[KillReport], list[str], str]:
    """The whole experiment; returns (kill reports, differences, the children's log text)."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = make_data(workdir)
    env = child_env(threads)
    reference, killed = workdir / "reference", workdir / "killed"
    log_path = workdir / "children.log"
    rng = random.Random(seed)
    reports: list[KillReport] = []
    with open(log_path, "w", encoding="utf-8") as log:
        if not (reference / "model_final.pth").is_file():
            subprocess.run(train_argv(data, reference, max_iter) + ["--overwrite"], env=env, stdout=log,
                           stderr=log, cwd=REPO, check=True)
        argv = train_argv(data, killed, max_iter) + ["--overwrite"]
        for index in range(moments):
            target = min(max_iter - 1, checkpointed_iteration(killed) + rng.randint(1, 2))
            report = run_and_kill(argv, env, killed, target=target, delay_s=rng.uniform(0.0, 2.0),
                                  during_write=index % 2 == 1, log=log)
            argv = resume_argv(killed)
            if report is None:  # finished before the moment came
                break
            if truncate_once and index == 0:
                report.truncated = truncate_newest_checkpoint(killed)
            reports.append(report)
            if verbose:
                print(f"kill {index + 1}: {report.moment}; newest checkpoint {report.killed_at_iteration}; "
                      f"half-written files left: {report.temporary_files or 'none'}"
                      + (f"; then truncated {report.truncated}" if report.truncated else ""), flush=True)
        subprocess.run(resume_argv(killed), env=env, stdout=log, stderr=log, cwd=REPO, check=True)
    return reports, compare_runs(reference, killed), log_path.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moments", type=int, default=5, help="SIGKILLs (default 5)")
    parser.add_argument("--max-iter", type=int, default=8, help="iterations of the tiny run (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the training processes")
    parser.add_argument("--workdir", type=Path, default=Path("outputs/bench_kill_resume"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    start = time.monotonic()
    reports, problems, _ = kill_resume_experiment(args.workdir, moments=args.moments, max_iter=args.max_iter,
                                                  seed=args.seed, threads=args.threads)
    elapsed = time.monotonic() - start
    verdict = "IDENTICAL" if not problems else "DIFFERENT: " + "; ".join(problems)
    during_write = sum("writing" in r.moment for r in reports)
    print(json.dumps({"kills": len(reports), "during_checkpoint_write": during_write, "verdict": verdict,
                      "seconds": round(elapsed, 1)}))
    print(f"{len(reports)} SIGKILLs, resumed after each: final weights and per-iteration losses {verdict} "
          f"to the uninterrupted run ({elapsed:.0f} s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
