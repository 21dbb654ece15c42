"""A training run's folder: never overwritten by accident, resumed with the config it started with.

- `prepare_output_dir`: a folder that already holds a run is refused unless the user resumes it
  (``--resume``) or asks for its files to be deleted (``--overwrite``).
- `check_resume_config`: on ``--resume`` the run continues with its saved ``config.yaml``; an
  override that would change how it trains is refused by name, while settings that do not change
  the computed weights (logging, checkpoint and evaluation periods, loader workers, the progress
  bar, and ``solver.max_iter`` to extend or shorten the run) are allowed and reported.
- `resume_command`: the exact command that continues a run.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamvis.errors import ConfigError

CONFIG_FILE = "config.yaml"

# What `streamvis train` writes into its output folder (and nothing else is deleted by --overwrite).
_RUN_FILE = re.compile(
    r"^(config\.yaml|metrics\.jsonl|loss_curve\.png|last_checkpoint|checkpoints\.json|model_final\.pth"
    r"|model_\d{7}\.pth|\.(model_(\d{7}|final)\.pth|checkpoints\.json|last_checkpoint|config\.yaml"
    r"|metrics\.jsonl|loss_curve\.png)\..+\.tmp)$"
)
# Files that mark a folder as holding a run (a lone loss_curve.png or temporary file does not).
_RUN_MARKERS = ("config.yaml", "metrics.jsonl", "last_checkpoint", "checkpoints.json", "model_final.pth")

# Keys a resumed run may change: they decide what is logged, saved or evaluated and how fast data
# is loaded, never the weights (`EvalHook` leaves the RNG streams as it found them; batch t is a
# pure function of (seed, t, rank) whatever the number of workers). `solver.max_iter` extends or
# shortens the run; the iterations both lengths share stay bitwise equal, since the schedule does
# not depend on it (unless `solver.scale_schedule` is on, see `check_resume_config`).
RESUME_CHANGEABLE_KEYS = (
    "output_dir", "solver.max_iter", "train.log_period", "train.checkpoint_period", "train.keep_last",
    "train.eval_period", "train.progress_bar", "train.plot_loss_curve", "data.num_workers",
)


class RunExistsError(ConfigError):
    """The output folder holds an earlier run and neither --resume nor --overwrite was given."""


class ResumeConfigError(ConfigError):
    """An override given with --resume would change how the saved run trains."""


def existing_run_files(output_dir) -> list[Path]:
    """The files of an earlier run in `output_dir` (empty when it holds none), sorted by name."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and _RUN_FILE.match(p.name))
    return files if any(p.name in _RUN_MARKERS or p.name.startswith("model_") for p in files) else []


def prepare_output_dir(output_dir, *, resume: bool, overwrite: bool) -> list[Path]:
    """Refuse to train into a folder holding a run, unless resuming it or told to overwrite it.

    Args:
        output_dir: the run's folder (it may not exist yet).
        resume: ``--resume``: the run in the folder is continued.
        overwrite: ``--overwrite``: the earlier run's files (checkpoints, metrics.jsonl,
            loss_curve.png, config.yaml, ...) are deleted first; other files stay.

    Returns:
        The files deleted (empty unless `overwrite`).

    Raises:
        ConfigError: both `resume` and `overwrite`.
        RunExistsError: the folder holds a run and neither flag was given.
    """
    if resume and overwrite:
        raise ConfigError("--resume continues the run in the output folder and --overwrite deletes it: "
                          "give one of them")
    found = existing_run_files(output_dir)
    if resume or not found:
        return []
    if overwrite:
        for path in found:
            path.unlink(missing_ok=True)
        return found
    shown = ", ".join(p.name for p in found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
    raise RunExistsError(
        f"{output_dir} already holds a training run ({shown}); streamvis train does not overwrite it. "
        f"Continue that run with `{resume_command(output_dir)}`, train into another folder with "
        "--output-dir NEW_FOLDER, or add --overwrite to delete that run's files first."
    )


def resume_command(output_dir, *, world_size: int = 1) -> str:
    """The command that continues the run in `output_dir` (with torchrun for several processes)."""
    folder = shlex.quote(str(output_dir))
    if world_size > 1:
        return f"torchrun --nproc_per_node={world_size} -m streamvis train --resume --output-dir {folder}"
    return f"streamvis train --resume --output-dir {folder}"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are compared as values (tuples)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def _steps_ahead(old, new, iteration: int | None) -> bool:
    """True when `old` and `new` ``solver.steps`` differ only in steps after `iteration`.

    The learning rate of an iteration depends only on the steps at or before it, so such a change
    leaves every iteration already trained as it was: a running schedule can be shortened (e.g.
    ``max_iter`` 1600 -> 1300 with steps [1270, 1470] -> [1050, 1200] at iteration 600).
    """
    if iteration is None or not isinstance(old, (list, tuple)) or not isinstance(new, (list, tuple)):
        return False
    early_old = sorted(int(s) for s in old if int(s) <= iteration)
    early_new = sorted(int(s) for s in new if int(s) <= iteration)
    return early_old == early_new


def check_resume_config(saved: Mapping[str, Any], current: Mapping[str, Any], *, config_file,
                        resumed_iteration: int | None = None) -> list[str]:
    """Compare the config a run was saved with to the one it is resumed with.

    Args:
        saved: the run's ``config.yaml`` as a dict.
        current: the resumed run's resolved config as a dict (`streamvis.config.to_dict`).
        config_file: the saved file's path (named in messages).
        resumed_iteration: the iteration of the checkpoint the run resumes from, if known:
            ``solver.steps`` may then change in steps after it (`_steps_ahead`).

    Returns:
        One note per allowed change (e.g. ``"solver.max_iter: 200 -> 400"``).

    Raises:
        ResumeConfigError: a change of any other key; the message names every such key with its
            saved and new value.
    """
    old, new = flatten(saved), flatten(current)
    # a key the saved file lacks was added to streamvis after the run started: its default applies
    changed = sorted(k for k in old.keys() | new.keys() if k in old and old[k] != new.get(k, "<absent>"))
    allowed = set(RESUME_CHANGEABLE_KEYS)
    if new.get("solver.scale_schedule") or old.get("solver.scale_schedule"):
        allowed.discard("solver.max_iter")  # a scaled schedule moves with max_iter
    elif _steps_ahead(old.get("solver.steps"), new.get("solver.steps"), resumed_iteration):
        allowed.add("solver.steps")
    refused = [k for k in changed if k not in allowed]
    describe = [f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in changed]
    if refused:
        shown = "; ".join(d for k, d in zip(changed, describe) if k in refused)
        raise ResumeConfigError(
            f"--resume continues the run saved in {config_file}, but the given config/overrides change "
            f"how it trains: {shown}. Drop these overrides to continue the run exactly (only "
            f"{', '.join(RESUME_CHANGEABLE_KEYS[1:])} may change on resume, and solver.steps after the "
            f"resumed iteration), or start a new run in "
            f"another --output-dir (with --set train.init_weights=... to start from its weights)."
        )
    return [d for k, d in zip(changed, describe) if k != "output_dir"]


def prepare_run_folder(cfg, info, *, resume: bool, overwrite: bool) -> list[str]:
    """Refuse/clear an earlier run, or check the resumed config; rank 0 decides, all ranks agree
    (`streamvis.engine.train` calls it with the `ExperimentConfig` and `distributed.DistInfo`).

    Returns:
        Notes for the log (files deleted by `overwrite`, allowed config changes on resume).
    """
    from streamvis.engine import distributed as du
    from streamvis.errors import StreamvisError

    outcome: tuple[str, str, list[str]] | None = None  # (error class, message, notes)
    if info.is_main:
        try:
            outcome = ("", "", _prepare_folder_main(cfg, resume=resume, overwrite=overwrite))
        except StreamvisError as err:
            outcome = (type(err).__name__, str(err), [])
    outcome = du.broadcast_object(outcome)
    error_name, message, notes = outcome
    if error_name:
        raise globals().get(error_name, RunExistsError)(message)
    return notes


def _prepare_folder_main(cfg, *, resume: bool, overwrite: bool) -> list[str]:
    from streamvis.config import read_yaml, to_dict
    from streamvis.engine.checkpoint import Checkpointer
    from streamvis.errors import StreamvisError

    output_dir = Path(cfg.output_dir)
    deleted = prepare_output_dir(output_dir, resume=resume, overwrite=overwrite)
    notes = [f"--overwrite: deleted the earlier run's {len(deleted)} files in {output_dir}"] * bool(deleted)
    if not resume:
        return notes
    checkpointer = Checkpointer(output_dir)
    checkpointer.remove_temporary_files()  # left by a process killed while writing
    saved = output_dir / CONFIG_FILE
    if saved.is_file():
        try:  # schedule steps after every recorded checkpoint may still change (the oldest: a torn
            records = checkpointer.records()  # newest one makes the run resume from an older one)
        except StreamvisError:
            records = []
        iteration = min((r.iteration for r in records), default=None)
        changes = check_resume_config(read_yaml(saved), to_dict(cfg), config_file=saved,
                                      resumed_iteration=iteration)
        notes += [f"--resume: {change} (allowed: it does not change the weights computed)"
                  for change in changes]
    return notes
