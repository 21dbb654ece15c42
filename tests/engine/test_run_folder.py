"""Run folders: an earlier run is never overwritten by accident; resume config changes by name."""

from __future__ import annotations

import pytest

from streamvis.engine.run_folder import (
    ResumeConfigError,
    RunExistsError,
    check_resume_config,
    existing_run_files,
    prepare_output_dir,
    resume_command,
)
from streamvis.errors import ConfigError


def test_empty_or_foreign_folders_are_not_runs(tmp_path):
    assert existing_run_files(tmp_path / "absent") == []
    (tmp_path / "data.json").write_text("{}")
    (tmp_path / "loss_curve.png").write_bytes(b"")  # a picture alone is not a run
    assert existing_run_files(tmp_path) == []
    assert prepare_output_dir(tmp_path, resume=False, overwrite=False) == []


def test_a_run_is_refused_and_overwrite_deletes_only_its_files(tmp_path):
    for name in ("config.yaml", "metrics.jsonl", "model_0000010.pth", "model_final.pth", "last_checkpoint",
                 ".model_0000020.pth.ab12.tmp", "data.json"):
        (tmp_path / name).write_text("x")
    with pytest.raises(RunExistsError) as refused:
        prepare_output_dir(tmp_path, resume=False, overwrite=False)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path} already holds a training run (")
    assert f"streamvis train --resume --output-dir {tmp_path}" in message
    assert "--output-dir NEW_FOLDER" in message and "--overwrite" in message
    assert prepare_output_dir(tmp_path, resume=True, overwrite=False) == []  # resuming is fine
    deleted = prepare_output_dir(tmp_path, resume=False, overwrite=True)
    assert len(deleted) == 6 and sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]
    with pytest.raises(ConfigError, match="give one of them"):
        prepare_output_dir(tmp_path, resume=True, overwrite=True)


def test_resume_may_move_schedule_steps_that_lie_ahead():
    """Shortening a running schedule: steps after the resumed checkpoint may change, earlier ones not."""
    saved = {"solver": {"steps": [1270, 1470], "max_iter": 1600}}
    shorter = {"solver": {"steps": [1050, 1200], "max_iter": 1300}}
    notes = check_resume_config(saved, shorter, config_file="c", resumed_iteration=600)
    assert notes == ["solver.max_iter: 1600 -> 1300", "solver.steps: (1270, 1470) -> (1050, 1200)"]
    with pytest.raises(ResumeConfigError, match=r"solver\.steps"):  # 1050 is behind iteration 1100
        check_resume_config(saved, shorter, config_file="c", resumed_iteration=1100)
    with pytest.raises(ResumeConfigError, match=r"solver\.steps"):  # iteration unknown: refused
        check_resume_config(saved, shorter, config_file="c")
    passed = {"solver": {"steps": [1270, 1400], "max_iter": 1600}}  # 1270 already applied, kept
    assert check_resume_config(saved, passed, config_file="c", resumed_iteration=1300) == [
        "solver.steps: (1270, 1470) -> (1270, 1400)"]


def test_resume_config_check_names_each_refused_key():
    saved = {"seed": 0, "output_dir": "a", "solver": {"base_lr": 0.01, "steps": [10, 20], "max_iter": 30},
             "train": {"log_period": 20}}
    same = {**saved, "output_dir": "b", "solver": {**saved["solver"], "steps": (10, 20)}}
    assert check_resume_config(saved, same, config_file="run/config.yaml") == []
    harmless = {**saved, "solver": {**saved["solver"], "max_iter": 60}, "train": {"log_period": 5}}
    assert check_resume_config(saved, harmless, config_file="c") == ["solver.max_iter: 30 -> 60",
                                                                      "train.log_period: 20 -> 5"]
    changed = {**saved, "seed": 1, "solver": {**saved["solver"], "steps": [10, 25]}}
    expected = r"run/config\.yaml.*seed: 0 -> 1; solver\.steps: \(10, 20\) -> \(10, 25\)\. Drop these"
    with pytest.raises(ResumeConfigError, match=expected):
        check_resume_config(saved, changed, config_file="run/config.yaml")
    newer_key = {**saved, "train": {"log_period": 20, "deterministic": True}}  # added after the run began
    assert check_resume_config(saved, newer_key, config_file="c") == []
    scaled = {**saved, "solver": {**saved["solver"], "scale_schedule": True}}
    with pytest.raises(ResumeConfigError, match=r"solver\.max_iter: 30 -> 60"):  # a scaled schedule moves
        longer = {**scaled, "solver": {**scaled["solver"], "max_iter": 60}}
        check_resume_config(scaled, longer, config_file="c")


def test_resume_command_quotes_the_folder_and_names_torchrun():
    assert resume_command("out/my run") == "streamvis train --resume --output-dir 'out/my run'"
    expected = "torchrun --nproc_per_node=2 -m streamvis train --resume --output-dir o"
    assert resume_command("o", world_size=2) == expected
