"""`streamvis train`: train a model from a YAML config.

Examples::

    streamvis train --config configs/synthetic_r18.yaml
    streamvis train --config configs/synthetic_r18.yaml --set solver.max_iter=200 --output-dir outputs/try
    streamvis train --config configs/synthetic_r18.yaml --resume          # continue exactly
    torchrun --nproc_per_node=2 -m streamvis train --config configs/crossvis_r50_ytvis19.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvis.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `train` arguments to `parser`."""
    parser.add_argument("--config", required=True, help="experiment YAML (e.g. configs/synthetic_r18.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set solver.max_iter=1000 (repeatable; "
                             "values are YAML: 0.01, [10, 20], null, true)")
    parser.add_argument("--output-dir", default=None,
                        help="where checkpoints, metrics.jsonl and loss_curve.png go (default: the "
                             "config's output_dir)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in the output folder, exactly where "
                             "it stopped")


def run(args: argparse.Namespace) -> int:
    """Load the config, check the data exists, train; prints where the outputs went."""
    from streamvis.config import load_config

    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    cfg = load_config(args.config, overrides)
    check_data_paths(cfg, config_path=args.config)

    from streamvis.engine.train import train

    result = train(cfg, resume=args.resume)
    from streamvis.engine.distributed import env_dist_info

    if env_dist_info().is_main:
        print(f"trained {result.iteration} iterations; final weights: {result.final_checkpoint}")
        out = result.output_dir
        print(f"metrics: {out / 'metrics.jsonl'}, curves: {out / 'loss_curve.png'}")
    return 0


def check_data_paths(cfg, *, config_path) -> None:
    """Every configured data path must exist; otherwise say which and how to make synthetic data.

    Raises:
        ConfigError: names the missing path, its config key and the `streamvis synth` command.
    """
    data = cfg.data
    keys = [("train_json", data.train_json), ("train_images", data.train_images)]
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
