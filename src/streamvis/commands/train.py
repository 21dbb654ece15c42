"""`streamvis train`: train a model from a YAML config.

Examples::

    streamvis train --config configs/synthetic_r18.yaml
    streamvis train --config configs/synthetic_r18.yaml --set solver.max_iter=200 --output-dir outputs/try
    streamvis train --resume --output-dir outputs/try      # continue exactly, with the saved config
    streamvis train --config configs/synthetic_r18.yaml --output-dir outputs/try --overwrite
    torchrun --nproc_per_node=2 -m streamvis train --config configs/crossvis_r50_ytvis19.yaml

A folder that holds an earlier run is never overwritten silently: continue it with --resume, train
into another --output-dir, or pass --overwrite. Ctrl-C (SIGINT) or SIGTERM saves a checkpoint of
the current iteration and prints the command that resumes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamvis.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `train` arguments to `parser`."""
    parser.add_argument("--config", default=None,
                        help="experiment YAML (e.g. configs/synthetic_r18.yaml); optional with --resume, "
                             "which reads the run's saved config.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set solver.max_iter=1000 (repeatable; "
                             "values are YAML: 0.01, [10, 20], null, true). With --resume only keys that "
                             "do not change the weights may change (solver.max_iter, train.*_period, "
                             "train.keep_last, train.progress_bar, train.plot_loss_curve, data.num_workers); "
                             "any other change is refused by name")
    parser.add_argument("--output-dir", default=None,
                        help="where checkpoints, metrics.jsonl and loss_curve.png go (default: the "
                             "config's output_dir); with --resume, the run to continue")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run in the output folder from its newest complete checkpoint, "
                           "exactly where it stopped, with its saved config.yaml")
    mode.add_argument("--overwrite", action="store_true",
                      help="the output folder holds an earlier run: delete that run's files (checkpoints, "
                           "metrics.jsonl, loss_curve.png, config.yaml) first. Without --resume or "
                           "--overwrite such a folder is refused, so no run is ever replaced by accident")


def run(args: argparse.Namespace) -> int:
    """Load the config, check the data exists, train; prints where the outputs went.

    Returns:
        0 when training finished; 130 (SIGINT) or 143 (SIGTERM) when it was interrupted after
        saving a checkpoint (the resume command is printed).
    """
    cfg = load_run_config(args)
    check_data_paths(cfg, config_path=args.config or Path(cfg.output_dir) / "config.yaml")

    from streamvis.engine.train import TrainingInterrupted, train

    try:
        result = train(cfg, resume=args.resume, overwrite=args.overwrite)
    except TrainingInterrupted as stop:
        print(f"streamvis train: {stop}", file=sys.stderr)
        return stop.exit_code
    from streamvis.engine.distributed import env_dist_info

    if env_dist_info().is_main:
        print(f"trained {result.iteration} iterations; final weights: {result.final_checkpoint}")
        out = result.output_dir
        print(f"metrics: {out / 'metrics.jsonl'}, curves: {out / 'loss_curve.png'}")
    return 0


def load_run_config(args: argparse.Namespace):
    """The experiment config: --config + --set; with --resume and no --config, the run's config.yaml + --set.

    Raises:
        ConfigError: neither --config nor (with --resume) an --output-dir holding config.yaml.
    """
    from streamvis.config import load_config

    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    if args.config is not None:
        return load_config(args.config, overrides)
    if not args.resume:
        raise ConfigError("--config is required (it may be left out only with --resume, which reads the "
                          "run's saved config.yaml from --output-dir)")
    if args.output_dir is None:
        raise ConfigError("--resume without --config needs --output-dir: the folder of the run to continue")
    saved = Path(args.output_dir) / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"{saved} not found: --output-dir {args.output_dir} holds no streamvis training "
                          "run to resume (give --config to start one there)")
    return load_config(saved, overrides)


def check_data_paths(cfg, *, config_path) -> None:
    """Every configured data path must exist; otherwise say which and how to make synthetic data.

    Raises:
        ConfigError: names the missing path, its config key and the `streamvis synth` command.
    """
    data = cfg.data
    keys = [("train_json", data.train_json), ("train_images", data.train_images)]
    if cfg.train.eval_period != "never":  # never evaluated: the valid split need not exist
        keys += [("valid_json", data.valid_json), ("valid_images", data.valid_images)]
    for key, value in keys:
        if key.startswith("train") and not value:
            raise ConfigError(f"{config_path}: data.{key} is empty; set it to the training json/frames")
        if value and not Path(value).exists():
            hint = _synth_hint(key, value)
            raise ConfigError(f"{config_path}: data.{key} = {value} does not exist. {hint}")


def _synth_hint(key: str, value: str) -> str:
    """The command that creates the missing synthetic split (its json and frames share a folder)."""
    split = "valid" if key.startswith("valid") else "train"
    folder = Path(value).parent  # DIR/instances.json and DIR/JPEGImages (streamvis synth layout)
    videos = 400 if split == "train" else 50
    return (
        f"For the synthetic data, generate it first: streamvis synth --out {folder} --videos {videos} "
        f"--seed 0 --split {split}. For YouTube-VIS, download it and point data.{key} at it "
        "(or use --set)."
    )
