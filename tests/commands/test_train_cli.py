"""`streamvis train` runs: an earlier run is never overwritten, Ctrl-C saves and prints how to resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamvis.cli import main
from streamvis.engine.checkpoint import load_checkpoint
from streamvis.engine.hooks import read_metrics

REPO = Path(__file__).resolve().parents[2]


def _argv(synth, out_dir, *extra) -> list[str]:
    overrides = [
        f"data.train_json={synth / 'instances.json'}", f"data.train_images={synth / 'JPEGImages'}",
        "data.valid_json=null", "data.valid_images=null", "data.num_workers=0", "data.short_sides=[64]",
        "data.max_size=96", "model.num_identities=16", "solver.ims_per_batch=2", "solver.warmup_iters=1",
        "train.checkpoint_period=100", "train.log_period=1", "train.progress_bar=false",
        "train.plot_loss_curve=false",
    ]
    argv = ["train", "--config", str(REPO / "configs" / "synthetic_r18.yaml"), "--output-dir", str(out_dir)]
    for item in overrides:
        argv += ["--set", item]
    return argv + list(extra)


def test_existing_run_is_refused_with_the_three_ways_out(tiny_synth, tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "model_final.pth").write_bytes(b"old weights")
    assert main(_argv(tiny_synth, tmp_path, "--set", "solver.max_iter=1")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamvis train: error: {tmp_path} already holds a training run (config.yaml, "
                          "model_final.pth)")
    assert f"`streamvis train --resume --output-dir {tmp_path}`" in err
    assert "--output-dir NEW_FOLDER" in err and "--overwrite to delete that run's files first" in err
    assert (tmp_path / "model_final.pth").read_bytes() == b"old weights"


def test_resume_needs_a_run_folder_and_excludes_overwrite(tmp_path, capsys):
    assert main(["train", "--resume"]) == 2
    assert "--resume without --config needs --output-dir" in capsys.readouterr().err
    assert main(["train", "--resume", "--output-dir", str(tmp_path)]) == 2
    expected = f"{tmp_path / 'config.yaml'} not found: --output-dir {tmp_path} holds no streamvis training"
    assert expected in capsys.readouterr().err
    assert main(["train", "--output-dir", str(tmp_path)]) == 2
    assert "--config is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["train", "--resume", "--overwrite", "--output-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_help_documents_overwrite_and_resume(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--overwrite" in text and "delete that run's files" in text and "refused" in text
    assert "with its saved config.yaml" in text


@pytest.mark.slow  # two processes training CrossVIS on CPU
def test_sigint_saves_checkpoint_prints_resume_command_and_resume_uses_saved_config(tiny_synth, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "streamvis"] + _argv(tiny_synth, out, "--set", "solver.max_iter=4")
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not [r for r in read_metrics(out / "metrics.jsonl") if "total_loss" in r]:  # iteration 1 done
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 130, stderr
    stopped = load_checkpoint(out / f"model_{read_metrics(out / 'metrics.jsonl')[-1]['iteration']:07d}.pth")
    assert 1 <= stopped["iteration"] < 4  # the iteration that was running when Ctrl-C came
    assert "SIGINT received: finishing this iteration and saving a checkpoint" in stderr
    assert f"Resume exactly where it stopped with: streamvis train --resume --output-dir {out}" in stderr
    assert "Traceback" not in stderr
    # resume with no --config and no --set: everything comes from the run's config.yaml
    assert main(["train", "--resume", "--output-dir", str(out)]) == 0
    lines = [r for r in read_metrics(out / "metrics.jsonl") if "total_loss" in r]
    assert [r["iteration"] for r in lines] == [1, 2, 3, 4]
    final = load_checkpoint(out / "model_final.pth")
    assert final["iteration"] == 4 and final["experiment"]["data"]["short_sides"] == [64]
    # a change of how the run trains is refused by name
    assert main(["train", "--resume", "--output-dir", str(out), "--set", "solver.base_lr=0.5"]) == 2
