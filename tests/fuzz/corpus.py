"""The fuzz corpus: mutated inputs of every kind streamvis reads, run through the CLI and library.

Used by ``tests/fuzz/test_fuzz_corpus.py`` (a bounded, derandomised hypothesis run in the test
suite) and ``benchmarks/fuzz_corpus.py`` (thousands of cases, counts per kind and outcome).

A case is made from a seed by `make_case(kind, seed, workdir)`: a copy of a valid input of that
kind with 1-3 random mutations (see each ``_mutate_*``). `run_case` runs it through the entry
points that read that kind and returns an `Outcome`:

- ``"ok"``: every entry point succeeded (exit 0, or 1 for a check-dataset report with errors);
- ``"error"``: some entry point refused the input cleanly: a `StreamvisError` (library) or exit 2
  with one ``streamvis CMD: error: ...`` paragraph on stderr (CLI);
- ``"known_bug"``: a failure listed in `KNOWN_BUGS` (code another engineer owns; the tests mark
  each with a strict xfail);
- anything else is a failure: ``"traceback"`` (another exception escaped), ``"bad_exit"``,
  ``"bad_message"`` (no one-paragraph streamvis error line), ``"partial_output"`` (a temporary
  file left, or an output written by a command that failed), ``"hang"`` (past the time limit),
  ``"disagree"`` (loading and check-dataset gave different verdicts on an annotation json),
  ``"crash"`` (a child process killed by a signal, e.g. a segfault in native code),
  ``"executed"`` (a pickle's code ran).

Kinds: ``annotation_json``, ``results_json``, ``frame_folder``, ``mp4``, ``config``, ``weights``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import pickle
import random
import shutil
import signal
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
KINDS = ("annotation_json", "results_json", "frame_folder", "mp4", "config", "weights")
GOOD_OUTCOMES = ("ok", "error")  # "known_bug": a failure in another engineer's code (KNOWN_BUGS)
CASE_TIME_LIMIT_S = 60  # a case past this is a hang (SIGALRM; the slowest legitimate case takes ~2 s)
FRAME_KINDS = ("missing_frame", "unreadable_frame", "frame_size_mismatch")


@dataclass
class Outcome:
    """What one case did: its kind, seed, outcome and, for failures, what went wrong."""

    kind: str
    seed: int
    outcome: str
    detail: str = ""
    mutations: list[str] = field(default_factory=list)

    @property
    def good(self) -> bool:
        """Success, a clean error, or a failure already listed in `KNOWN_BUGS`."""
        return self.outcome in GOOD_OUTCOMES or self.outcome == "known_bug"


class _Timeout(BaseException):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int):
    """Raise `_Timeout` in the main thread after `seconds` (no limit off the main thread)."""
    if not hasattr(signal, "SIGALRM") or __import__("threading").current_thread().name != "MainThread":
        yield
        return

    def fire(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------ seed inputs
H, W = 24, 32


def _box_rle(top, left, height, width, size=(H, W)):
    from streamvis.data.masks import encode_mask

    mask = np.zeros(size, bool)
    mask[top : top + height, left : left + width] = True
    return encode_mask(mask)


def seed_annotations() -> dict:
    """Two videos (3 and 2 frames of 24x32), two categories, every per-frame form."""
    videos = [
        {"id": 1, "width": W, "height": H, "length": 3, "file_names": ["a/0.jpg", "a/1.jpg", "a/2.jpg"]},
        {"id": 2, "width": W, "height": H, "length": 2, "file_names": ["b/0.png", "b/1.png"]}
    ]
    uncompressed = {"size": [H, W], "counts": [100, 12, H * W - 112]}
    annotations = [
        {
            "id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": [_box_rle(2, 3, 5, 6),
            None, uncompressed], "bboxes": [[3.0, 2.0, 6.0, 5.0], None, [4.0, 4.0, 1.0, 12.0]], "areas": [30,
            None, 12]
        },
        {
            "id": 2, "video_id": 1, "category_id": 2, "iscrowd": 0, "segmentations": [[[1.0, 1.0, 10.0, 1.0,
            10.0, 8.0]], _box_rle(10, 10, 4, 4), None]
        },
        {
            "id": 3, "video_id": 2, "category_id": 1, "iscrowd": 1, "segmentations": [_box_rle(0, 0, 3, 3),
            _box_rle(1, 1, 3, 3)]
        },
    ]
    categories = [{"id": 1, "name": "one"}, {"id": 2, "name": "two", "supercategory": "x"}]
    return {"videos": videos, "categories": categories, "annotations": annotations}


def seed_results() -> list[dict]:
    return [
        {"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [_box_rle(2, 3, 5, 6), None, None]},
        {
            "video_id": 1, "category_id": 2, "score": 0.4, "segmentations": [None, _box_rle(10, 10, 4, 4),
            None]
        },
        {"video_id": 2, "category_id": 1, "score": 0.7, "segmentations": [_box_rle(0, 0, 3, 3), None]},
    ]


def _frame(index: int, size=(H, W)) -> np.ndarray:
    image = np.zeros((*size, 3), np.uint8)
    image[:, : size[1] // 2] = (60 + 20 * index) % 200
    image[:, size[1] // 2 :] = 200
    return image


def write_frames(root: Path, data: dict) -> None:
    from PIL import Image

    for video in data["videos"]:
        for f, name in enumerate(video["file_names"]):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_frame(f, (video["height"], video["width"]))).save(root / name)


class Seeds:
    """Valid inputs of every kind, built once under `folder` and copied into each case."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.gt = seed_annotations()
        self.results = seed_results()
        self.images = self.folder / "images"
        if not self.images.exists():
            write_frames(self.images, self.gt)
        self.gt_json = self.folder / "gt.json"
        self.gt_json.write_text(json.dumps(self.gt))
        self.mp4 = self.folder / "clean.mp4"
        if not self.mp4.exists():
            from streamvis.data.video import write_video

            write_video(self.mp4, [_frame(i, (48, 64)) for i in range(12)])
        self.config_text = self._config_text()
        self._weights = None

    def _config_text(self) -> str:
        text = (REPO / "configs" / "synthetic_r18.yaml").read_text()
        return text.replace("data/synth/", "nonexistent_synth_data/")  # a valid config stops at the data

    @property
    def weights(self) -> Path:
        """A small valid streamvis weights file (a tiny CrossVIS, `tiny_weights_file`; built once)."""
        if self._weights is None:
            self._weights = self.folder / "weights.pth"
            if not self._weights.exists():
                tiny_weights_file(self._weights)
        return self._weights


def tiny_weights_file(path: Path) -> Path:
    """A streamvis weights file of a tiny random CrossVIS (as in tests/commands/test_predict_cli.py)."""
    import torch

    from streamvis.models.build import build_model
    from streamvis.models.crossvis.config import CrossVISConfig
    from streamvis.models.weights import save_weights

    cfg = CrossVISConfig(
        depth=18, num_classes=3, fpn_channels=32, head_channels=64, head_num_convs=1, mask_branch_channels=16,
        mask_branch_num_convs=1, reid_dim=16, num_identities=10, detections_per_frame=3, test_short_side=64,
        test_max_size=96
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.head.cls_logits.bias[0] = 4.0  # untrained: make class 0 fire everywhere
        model.head.bbox_pred.bias.fill_(2.0)
        model.head.controller.bias[-1] = 8.0  # the last dynamic-conv bias: masks on
    return save_weights(path, model.state_dict(), cfg)


# -------------------------------------------------------------------------------------- mutations
# values of every json type, biased to the troublemakers: NaN/inf, huge ints, bools, unicode, paths
_TROUBLE_VALUES = (
    None, True, False, 0, -1, 1, 2**31, 2**63, 10**30, -(10**20), 1.5, -0.0, float("nan"), float("inf"),
    float("-inf"), 1e308, "", "x", "\u00e9\u202e\U0001f600", "\ud800", "../../etc/passwd", "/etc/passwd",
    [], [None], [1, 2, 3], {}, {"size": [H, W], "counts": "0"}, {"a": [1, {"b": None}]}, [[1.0, 2.0, 3.0]],
    "0" * 5000,
)


def _random_value(rng: random.Random):
    """A random value of `_TROUBLE_VALUES` (a copy, so mutating it changes nothing shared)."""
    return copy.deepcopy(rng.choice(_TROUBLE_VALUES))


def _nodes(obj, path=()):
    """Every (container, key) pair of a json-like tree, with its path."""
    if isinstance(obj, dict):
        for key in list(obj):
            yield obj, key, path + (key,)
            yield from _nodes(obj[key], path + (key,))
    elif isinstance(obj, list):
        for index in range(len(obj)):
            yield obj, index, path + (index,)
            yield from _nodes(obj[index], path + (index,))


def _mutate_tree(rng: random.Random, data) -> str:
    """One structural mutation of a json-like tree, in place; returns its description."""
    nodes = list(_nodes(data))
    if not nodes:
        return "nothing to mutate"
    container, key, path = rng.choice(nodes)
    value = container[key]
    op = rng.choice(
        [
            "delete", "replace", "replace", "extra_key", "shorten", "lengthen", "duplicate", "rle_string",
            "rle_size", "number"
        ]
    )
    if op == "delete":
        if isinstance(container, dict):
            del container[key]
        else:
            container.pop(key)
    elif op == "replace":
        container[key] = _random_value(rng)
    elif op == "extra_key" and isinstance(value, dict):
        value[rng.choice(["extra", "id", "size", "counts", "\u00e9"])] = _random_value(rng)
    elif op == "shorten" and isinstance(value, (list, str)) and value:
        container[key] = value[: rng.randrange(len(value))]
    elif op == "lengthen" and isinstance(value, list):
        value.append(copy.deepcopy(rng.choice(value)) if value else _random_value(rng))
    elif op == "duplicate" and isinstance(value, list) and value:
        value.insert(rng.randrange(len(value) + 1), copy.deepcopy(rng.choice(value)))
    elif op == "rle_string" and isinstance(value, str):
        chars = list(value)
        for _ in range(rng.randint(1, 3)):
            if chars:
                chars[rng.randrange(len(chars))] = chr(
                    rng.choice([rng.randint(32, 126), rng.randint(48, 111), 0x00E9])
                )
        container[key] = "".join(chars)
    elif op == "rle_size" and isinstance(value, dict) and "size" in value:
        value["size"] = rng.choice([[W, H], [H, W + 1], [0, 0], [H], [2**31, 2], [-H, W], [H * 1.0, W]])
    elif op == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        container[key] = rng.choice([value + 1, -value, value * 10**12, 0, float("nan"), 2**64, True])
    else:
        container[key] = _random_value(rng)
        op = "replace"
    return f"{op} at {'/'.join(map(str, path))}"


def _serialize(rng: random.Random, data, mutations: list[str]) -> bytes:
    """json text of `data`, sometimes damaged at the file level (truncated, bad UTF-8, BOM, deep)."""
    text = json.dumps(data, allow_nan=True).encode("utf-8", "surrogatepass")
    roll = rng.random()
    if roll < 0.08:
        mutations.append("truncated file")
        return text[: rng.randrange(len(text))]
    if roll < 0.10:
        mutations.append("invalid UTF-8")
        cut = rng.randrange(len(text))
        return text[:cut] + b"\xff\xfe" + text[cut:]
    if roll < 0.12:
        mutations.append("empty file")
        return b""
    if roll < 0.13:
        mutations.append("deep nesting")
        return b"[" * 100000 + b"]" * 100000
    if roll < 0.14:
        mutations.append("huge integer literal")
        return text.replace(b'"id": 1', b'"id": ' + b"9" * 5000, 1)
    return text


def _benign_annotation_mutation(rng: random.Random, data: dict) -> str:
    """A change that keeps an annotation dict valid but unusual (the paths past validation run)."""
    op = rng.choice(
        [
            "unicode_names", "empty_annotations", "all_null", "empty_video", "big_ids", "unused_category",
            "crowd_bool", "no_boxes", "huge_area", "outside_polygon"
        ]
    )
    anns = data.get("annotations") or []
    if op == "unicode_names":
        for category in data["categories"]:
            category["name"] = "\u00e9\u202e\U0001f600 " + category["name"]
    elif op == "empty_annotations":
        data["annotations"] = rng.choice([[], None])
    elif op == "all_null":
        for ann in anns:
            ann["segmentations"] = [None] * len(ann["segmentations"])
            ann.pop("bboxes", None), ann.pop("areas", None)
    elif op == "empty_video":
        data["videos"].append({"id": 99, "width": W, "height": H, "length": 0, "file_names": []})
    elif op == "big_ids":
        mapping = {1: 2**62, 2: -5}
        for video in data["videos"]:
            video["id"] = mapping.get(video["id"], video["id"])
        for ann in anns:
            ann["video_id"] = mapping.get(ann["video_id"], ann["video_id"])
    elif op == "unused_category":
        data["categories"].append({"id": 77, "name": "unused"})
    elif op == "crowd_bool":
        for ann in anns:
            ann["iscrowd"] = bool(ann.get("iscrowd", 0))
    elif op == "no_boxes":
        for ann in anns:
            ann["bboxes"] = None
    elif op == "huge_area" and anns:
        anns[0]["areas"] = [1e308 if a is not None else None for a in anns[0].get("areas") or [0, 0, 0]]
    elif op == "outside_polygon" and len(anns) > 1:
        anns[1]["segmentations"][0] = [[-5.0, -5.0, W + 5.0, -5.0, W + 5.0, H + 5.0]]
    return f"benign {op}"


def _mutated_json(rng: random.Random, data, mutations: list[str]) -> bytes:
    data = copy.deepcopy(data)
    if isinstance(data, dict) and rng.random() < 0.3:
        mutations.append(_benign_annotation_mutation(rng, data))
        if rng.random() < 0.5:
            return json.dumps(data).encode()
    for _ in range(rng.randint(1, 3)):
        mutations.append(_mutate_tree(rng, data))
    return _serialize(rng, data, mutations)


# ------------------------------------------------------------------------------------------ running
def _partial_outputs(folder: Path) -> list[str]:
    """Temporary files left behind (atomic writers name them ``.<name>.<random>.tmp``)."""
    return [str(p) for p in folder.rglob(".*.tmp*")]


SUBPROCESS = False  # True: `run_cli` starts `python -m streamvis` (real stdout encoding, crashes seen)
PREDICT = False  # True: frame folders and MP4s also go through `streamvis predict` (tiny model, ~2 s)


def _run_subprocess(argv: list[str]) -> tuple[object, str]:
    """(exit code or a failure string, stderr) of ``python -m streamvis ARGV`` in a child process."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "streamvis", *argv], capture_output=True, timeout=CASE_TIME_LIMIT_S,
            env=env
        )
    except subprocess.TimeoutExpired:
        return "hang", ""
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode < 0:  # killed by a signal: a crash in native code (e.g. a segfault)
        return "crash", f"signal {-done.returncode}; {stderr[-300:]}"
    return done.returncode, stderr


def run_cli(argv: list[str], *, ok_codes=(0,), outputs=(), folder: Path) -> tuple[str, str]:
    """Run ``streamvis ARGV`` (in-process, or in a child process when `SUBPROCESS`); classify it.

    Args:
        argv: the command line after ``streamvis``.
        ok_codes: exit codes that mean success.
        outputs: files the command writes; they must not exist when it fails.
        folder: the case folder, searched for temporary files left behind.

    Returns:
        (outcome, detail).
    """
    from streamvis.cli import main

    if SUBPROCESS:
        code, stderr = _run_subprocess(argv)
        if code in ("hang", "crash"):
            return code, f"{argv[0]}: {stderr or 'no answer within the time limit'}"
        return _classify(argv, code, stderr, ok_codes, outputs, folder)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with _time_limit(CASE_TIME_LIMIT_S):
                code = main(argv)
        except SystemExit as exit_:  # argparse
            code = exit_.code
        except _Timeout:
            return "hang", f"{argv[0]}: no answer within {CASE_TIME_LIMIT_S} s"
        except BaseException as exc:  # noqa: BLE001 (that is what is being measured)
            return "traceback", f"{argv[0]}: {type(exc).__name__}: {str(exc)[:300]}"
    return _classify(argv, code, err.getvalue(), ok_codes, outputs, folder)


def _classify(argv, code, stderr: str, ok_codes, outputs, folder: Path) -> tuple[str, str]:
    """ok / error / a failure kind, from a command's exit code, stderr and the files it left."""
    left = _partial_outputs(folder)
    if left:
        return "partial_output", f"{argv[0]}: temporary files left: {left}"
    if "Traceback (most recent call last)" in stderr:
        return "traceback", f"{argv[0]}: {stderr[-500:]}"
    if code in ok_codes:
        return "ok", ""
    if code != 2:
        return "bad_exit", f"{argv[0]}: exit code {code}; stderr {stderr[-300:]!r}"
    prefix = f"streamvis {argv[0]}: error: "
    lines = [line for line in stderr.splitlines() if line.startswith(prefix)]
    if not lines and "usage:" not in stderr:
        return "bad_message", f"{argv[0]}: exit 2 without a '{prefix}' line: {stderr[-300:]!r}"
    message = stderr[stderr.find(prefix) :] if lines else stderr
    if "\n\n" in message.strip() or len(message) > 3000:
        return "bad_message", f"{argv[0]}: the error is not one paragraph: {message[:300]!r}"
    written = [str(p) for p in outputs if Path(p).exists()]
    if written:
        return "partial_output", f"{argv[0]}: failed but wrote {written}"
    return "error", lines[0][:300] if lines else "usage error"


def run_library(name: str, function, *args, **kwargs) -> tuple[str, str, object]:
    """Call a library entry point; (outcome, detail, return value)."""
    from streamvis.errors import StreamvisError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with _time_limit(CASE_TIME_LIMIT_S):
                value = function(*args, **kwargs)
        except StreamvisError as err:
            text = str(err)
            if "\n\n" in text.strip() or not text:
                return "bad_message", f"{name}: {text[:300]!r}", None
            return "error", f"{name}: {text[:300]}", None
        except _Timeout:
            return "hang", f"{name}: no answer within {CASE_TIME_LIMIT_S} s", None
        except BaseException as exc:  # noqa: BLE001
            return "traceback", f"{name}: {type(exc).__name__}: {str(exc)[:300]}", None
    return "ok", "", value


@dataclass(frozen=True)
class KnownBug:
    """A failure in code another engineer owns: matched by entry point and a piece of the detail."""

    entry_point: str
    signature: str
    owner: str
    reason: str

    def matches(self, outcome: str, detail: str) -> bool:
        return (
            outcome not in GOOD_OUTCOMES
            and detail.startswith(f"{self.entry_point}:")
            and self.signature in detail
        )


KNOWN_BUGS: tuple[KnownBug, ...] = ()  # none open: every entry point ends in success or a clean error


def known_bug(outcome: str, detail: str) -> KnownBug | None:
    """The known bug (owned by another engineer) that explains this failure, if any."""
    return next((bug for bug in KNOWN_BUGS if bug.matches(outcome, detail)), None)


def _combine(results: list[tuple[str, str]]) -> tuple[str, str]:
    """The worst outcome of several entry points: failure, then known_bug, then error, then ok."""
    marked = []
    for outcome, detail in results:
        bug = known_bug(outcome, detail)
        marked.append(("known_bug", f"{detail} [owner: {bug.owner}]") if bug else (outcome, detail))
    for rank in (
        lambda o: o not in GOOD_OUTCOMES + ("known_bug",), lambda o: o == "known_bug", lambda o: o == "error"
    ):
        chosen = [r for r in marked if rank(r[0])]
        if chosen:
            return chosen[0]
    return "ok", ""


# ---------------------------------------------------------------------------------- annotation json
def case_annotation_json(rng: random.Random, seeds: Seeds, folder: Path, mutations: list[str]):
    path = folder / "gt.json"
    path.write_bytes(_mutated_json(rng, seeds.gt, mutations))
    return path


def run_annotation_json(path: Path, seeds: Seeds, folder: Path) -> tuple[str, str]:
    from streamvis.commands.check_dataset import check_dataset
    from streamvis.data.ytvis import load_ytvis

    results = []
    load = run_library("load_ytvis", load_ytvis, path)
    results.append(load[:2])
    check = run_library("check_dataset", check_dataset, path, seeds.images)
    results.append(check[:2])
    if load[0] in GOOD_OUTCOMES and check[0] in GOOD_OUTCOMES:
        if check[0] == "error" and load[0] == "ok":
            results.append(("disagree", f"loading accepts, check-dataset raises: {check[1]}"))
        elif check[0] == "ok":
            json_errors = {
                k: n
                for k, n in check[2].counts.items()
                if k not in FRAME_KINDS and check[2].problems[k][0].is_error
            }
            if (load[0] == "ok") != (not json_errors):
                results.append(
                    ("disagree", f"load {load[0]} ({load[1]}) but check-dataset found {json_errors}")
                )
    report = folder / "report.json"
    results.append(
        run_cli(
            [
                "check-dataset", "--gt", str(path), "--images", str(seeds.images), "--no-progress", "--out",
                str(report)
            ],
            ok_codes=(0, 1),
            folder=folder,
        )
    )
    metrics = folder / "metrics.json"
    results_json = folder / "results.json"
    results_json.write_text(json.dumps(seeds.results))
    results.append(
        run_cli(
            ["evaluate", "--gt", str(path), "--results", str(results_json), "--out", str(metrics)],
            outputs=[metrics], folder=folder
        )
    )
    if load[0] == "ok":
        results.append(_dataset_item(path, seeds.images))
    return _combine(results)


def _dataset_item(path: Path, images: Path) -> tuple[str, str]:
    """The training dataset reads a sample of a json that loads (the loader's entry point)."""
    from streamvis.data.loader import YTVISDataset

    def first_items():
        dataset = YTVISDataset(path, images, short_sides=(24,), max_size=32)
        return [dataset[i] for i in range(min(len(dataset), 2))]

    return run_library("YTVISDataset", first_items)[:2]


# ------------------------------------------------------------------------------------- results json
def case_results_json(rng: random.Random, seeds: Seeds, folder: Path, mutations: list[str]):
    path = folder / "results.json"
    path.write_bytes(_mutated_json(rng, seeds.results, mutations))
    return path


def run_results_json(path: Path, seeds: Seeds, folder: Path) -> tuple[str, str]:
    from streamvis.data.ytvis import load_results

    results = [run_library("load_results", load_results, path, seeds.gt)[:2]]
    metrics = folder / "metrics.json"
    results.append(
        run_cli(
            [
                "evaluate", "--gt", str(seeds.gt_json), "--results", str(path), "--out", str(metrics),
                "--id-switches"
            ],
            outputs=[metrics],
            folder=folder,
        )
    )
    out = folder / "render"
    results.append(
        run_cli(
            [
                "render", "--results", str(path), "--gt-or-video", str(seeds.gt_json), "--images",
                str(seeds.images), "--out", str(out), "--no-progress"
            ],
            folder=folder,
        )
    )
    return _combine(results)


def _predict(folder: Path, seeds: Seeds, source: Path) -> tuple[str, str]:
    """``streamvis predict`` with the tiny seed weights on a video file or a frame folder."""
    out = folder / "predict"
    return run_cli(["predict", "--weights", str(seeds.weights), "--input", str(source), "--out", str(out),
                    "--no-progress"], outputs=[out / "results.json"], folder=folder)


# ------------------------------------------------------------------------------------- frame folders
def case_frame_folder(rng: random.Random, seeds: Seeds, folder: Path, mutations: list[str]):
    images = folder / "images"
    shutil.copytree(seeds.images, images)
    files = sorted(p for p in images.rglob("*") if p.is_file())
    for _ in range(rng.randint(1, 3)):
        target = rng.choice(files)
        op = rng.choice(
            ["delete", "truncate", "garbage", "empty", "resize", "directory", "swap_format", "delete_folder"]
        )
        mutations.append(f"{op} {target.relative_to(images)}")
        if not target.is_file() and op != "delete_folder":
            continue
        if op == "delete":
            target.unlink()
        elif op == "truncate":
            data = target.read_bytes()
            target.write_bytes(data[: rng.randrange(max(len(data) - 8, 1))])
        elif op == "garbage":
            target.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))))
        elif op == "empty":
            target.write_bytes(b"")
        elif op == "resize":
            from PIL import Image

            Image.fromarray(_frame(0, (rng.randint(1, 40), rng.randint(1, 40)))).save(
                target, format="PNG" if target.suffix == ".png" else "JPEG"
            )
        elif op == "directory":
            target.unlink()
            target.mkdir()
        elif op == "swap_format":
            from PIL import Image

            Image.fromarray(_frame(1)).save(target, format="JPEG" if target.suffix == ".png" else "PNG")
        elif op == "delete_folder" and target.parent.exists():
            shutil.rmtree(target.parent)
    return images


def run_frame_folder(images: Path, seeds: Seeds, folder: Path) -> tuple[str, str]:
    from streamvis.data.video import read_frames

    results = [
        run_cli(
            ["check-dataset", "--gt", str(seeds.gt_json), "--images", str(images), "--no-progress"],
            ok_codes=(0, 1), folder=folder
        )
    ]
    for video in ("a", "b"):
        results.append(run_library("read_frames", lambda v=video: list(read_frames(images / v)))[:2])
    results.append(_dataset_item(seeds.gt_json, images))
    if PREDICT:
        results.append(_predict(folder, seeds, images / "a"))  # the folder of video "a"
    return _combine(results)


# ----------------------------------------------------------------------------------------------- mp4
def case_mp4(rng: random.Random, seeds: Seeds, folder: Path, mutations: list[str]):
    data = bytearray(seeds.mp4.read_bytes())
    path = folder / "video.mp4"
    op = rng.choice(
        [
            "truncate", "truncate", "zero_length", "not_a_video", "corrupt", "corrupt", "header", "append",
            "variable_size"
        ]
    )
    mutations.append(op)
    if op == "truncate":
        data = data[: rng.randrange(len(data))]
    elif op == "zero_length":
        data = bytearray()
    elif op == "not_a_video":
        data = bytearray(
            rng.choice(
                [b"hello world\n" * 50, bytes(range(256)) * 4, (REPO / "README.md").read_bytes()[:4000]]
            )
        )
    elif op == "corrupt":
        for _ in range(rng.randint(1, 4)):
            start = rng.randrange(len(data))
            data[start : start + rng.randint(1, 300)] = bytes(
                rng.randrange(256) for _ in range(rng.randint(1, 300))
            )
    elif op == "header":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(min(64, len(data)))] = rng.randrange(256)
    elif op == "append":
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 2000)))
    elif op == "variable_size":
        path = folder / "video.h264"
        data = bytearray(_variable_size_h264(folder, rng))
    path.write_bytes(bytes(data))
    return path


def _variable_size_h264(folder: Path, rng: random.Random) -> bytes:
    import av

    parts = []
    for i, size in enumerate([(48, 64), (rng.choice([32, 40, 56]), rng.choice([32, 48, 80]))]):
        part = folder / f"part{i}.h264"
        with av.open(str(part), "w", format="h264") as container:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            stream = container.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
            for f in range(4):
                for packet in stream.encode(av.VideoFrame.from_ndarray(_frame(f, size), format="bgr24")):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        parts.append(part.read_bytes())
        part.unlink()
    return b"".join(parts)


def run_mp4(path: Path, seeds: Seeds, folder: Path) -> tuple[str, str]:
    from streamvis.data.video import probe, read_frames

    results = [
        run_library("read_frames", lambda: list(read_frames(path)))[:2], run_library("read_frames(strict)",
        lambda: list(read_frames(path, strict=True)))[:2], run_library("probe", probe, path)[:2]
    ]
    entries = folder / "one_video_results.json"
    segmentations = [_box_rle(5, 5, 20, 20, size=(48, 64))] + [None] * 11  # the seed video: 12 frames 48x64
    entries.write_text(
        json.dumps([{"video_id": 1, "category_id": 1, "score": 0.5, "segmentations": segmentations}])
    )
    out = folder / "render"
    results.append(
        run_cli(
            [
                "render", "--results", str(entries), "--gt-or-video", str(path), "--out", str(out),
                "--no-progress"
            ],
            folder=folder,
        )
    )
    if PREDICT:
        results.append(_predict(folder, seeds, path))
    return _combine(results)


# ---------------------------------------------------------------------------------- YAML and --set
_OVERRIDE_KEYS = [
    "model.num_classes", "solver.max_iter", "solver.base_lr", "solver.steps", "train.device",
    "data.short_sides", "seed", "model", "model.preset", "nope.key", "solver.max_itr", "",
    "model.num_classes.x", "train.amp", "data.train_json", "output_dir"
]
_OVERRIDE_VALUES = [
    "1", "-1", "0", "abc", "1e400", "nan", ".inf", "[1, 2]", "[", "{a: 1}", "null", "true", "9" * 5000,
    "!!python/object/apply:os.system ['true']", "*anchor", "'x'", "[[[[[]]]]]", "", "\u00e9"
]


def case_config(rng: random.Random, seeds: Seeds, folder: Path, mutations: list[str]):
    lines = seeds.config_text.splitlines()
    for _ in range(rng.randint(0, 3)):
        op = rng.choice(["delete_line", "value", "indent", "tab", "garbage", "python_tag", "duplicate"])
        index = rng.randrange(len(lines))
        mutations.append(f"{op} line {index}")
        line = lines[index]
        if op == "delete_line":
            lines.pop(index)
        elif op == "value" and ":" in line:
            key = line.split(":", 1)[0]
            lines[index] = f"{key}: {rng.choice(_OVERRIDE_VALUES)}"
        elif op == "indent":
            lines[index] = "   " + line
        elif op == "tab":
            lines[index] = "\t" + line
        elif op == "garbage":
            lines.insert(index, rng.choice(["{{{", "- - -", "key: [unclosed", "%YAML 9.9", "&a [*a]", ": :"]))
        elif op == "python_tag":
            lines.insert(index, "evil: !!python/object/apply:os.system ['touch pwned_by_yaml']")
        elif op == "duplicate":
            lines.insert(index, line)
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    overrides = []
    for _ in range(rng.randint(0, 3)):
        overrides.append(f"{rng.choice(_OVERRIDE_KEYS)}={rng.choice(_OVERRIDE_VALUES)}")
        if rng.random() < 0.1:
            overrides[-1] = rng.choice(["novalue", "=3", "a..b=1", "solver.=1"])
    mutations.extend(f"--set {o[:40]}" for o in overrides)
    return path, overrides


def run_config(case, seeds: Seeds, folder: Path) -> tuple[str, str]:
    from streamvis.config import load_config

    path, overrides = case
    results = [run_library("load_config", load_config, path, overrides)[:2]]
    argv = ["train", "--config", str(path), "--output-dir", str(folder / "out")]
    for override in overrides:
        argv += ["--set", override]
    results.append(run_cli(argv, folder=folder))  # a valid config stops at the (missing) data
    if (folder / "pwned_by_yaml").exists() or Path("pwned_by_yaml").exists():
        results.append(("executed", "a YAML python tag ran a command"))
    return _combine(results)


# ----------------------------------------------------------------------------------------- weights
class _RunsCode:
    """Pickles to a call of `os.system`: loading it must never run the command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_weights(path: Path, marker: Path, *, form: str = "torch") -> Path:
    """A weights file whose unpickling would create `marker` (torch zip, legacy torch or plain pickle)."""
    import torch

    payload = {"model": {"w": _RunsCode(marker)}, "config": {}}
    if form == "torch":
        torch.save(payload, path)
    elif form == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


def case_weights(rng: random.Random, seeds: Seeds, folder: Path, mutations: list[str]):
    import torch

    path = folder / rng.choice(["w.pth", "w.pth", "w.pkl"])
    marker = folder / "pwned_by_pickle"
    op = rng.choice(
        [
            "truncate", "garbage", "empty", "pickle_code", "pickle_code", "wrong_keys", "wrong_shapes",
            "wrong_types", "bad_config", "zip_member"
        ]
    )
    mutations.append(f"{op} ({path.suffix})")
    if op == "pickle_code":
        malicious_weights(path, marker, form=rng.choice(["torch", "legacy", "plain"]))
        return path, marker
    if op in ("truncate", "zip_member"):
        data = seeds.weights.read_bytes()
        if op == "truncate":
            path.write_bytes(data[: rng.randrange(len(data))])
        else:
            shutil.copy(seeds.weights, path)
            with zipfile.ZipFile(path, "a") as archive:  # a second data.pkl-like member
                archive.writestr(rng.choice(["w/extra.pkl", "w/data.pkl"]), b"garbage")
        return path, marker
    if op == "garbage":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 5000))))
        return path, marker
    if op == "empty":
        path.write_bytes(b"")
        return path, marker
    data = torch.load(seeds.weights, map_location="cpu", weights_only=True)
    state = data["model"]
    keys = sorted(state)
    if op == "wrong_keys":
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(keys)
            state[key + rng.choice(["_x", ""]) if rng.random() < 0.5 else "renamed." + key] = state.pop(
                key, None
            )
        if rng.random() < 0.3:
            data = rng.choice(
                [{"state_dict": state}, {"model": state}, state, [state], {"config": data["config"]}]
            )
    elif op == "wrong_shapes":
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(keys)
            state[key] = torch.zeros(rng.choice([(1,), (3, 3), (0,), ()]))
    elif op == "wrong_types":
        key = rng.choice(keys)
        state[key] = rng.choice(
            [1, "x", None, [1.0], {"a": torch.zeros(1)}, torch.zeros(2, dtype=torch.bool)]
        )
    elif op == "bad_config":
        config = data["config"]
        if isinstance(config, dict) and config:
            mutations.append(_mutate_tree(rng, config))
        else:
            data["config"] = _random_value(rng)
    torch.save(data, path)
    return path, marker


def run_weights(case, seeds: Seeds, folder: Path) -> tuple[str, str]:
    from streamvis.engine.checkpoint import load_checkpoint
    from streamvis.models.weights import load_model

    path, marker = case
    results = [
        run_library("load_model", load_model, path)[:2], run_library("load_checkpoint", load_checkpoint,
        path)[:2]
    ]
    out = folder / "converted.pth"
    results.append(
        run_cli(["convert", "--official", str(path), "--out", str(out)], outputs=[out], folder=folder)
    )
    exported = folder / "exported.pth"
    results.append(
        run_cli(
            ["export", "--checkpoint", str(path), "--out", str(exported)], outputs=[exported], folder=folder
        )
    )
    if marker.exists():
        results.insert(0, ("executed", f"unpickling {path.name} ran a command"))
    return _combine(results)


# ------------------------------------------------------------------------------------------- driver
CASES = {
    "annotation_json": (case_annotation_json, run_annotation_json), "results_json": (case_results_json,
    run_results_json), "frame_folder": (case_frame_folder, run_frame_folder), "mp4": (case_mp4, run_mp4),
    "config": (case_config, run_config), "weights": (case_weights, run_weights)
}


def run_case(kind: str, seed: int, seeds: Seeds, workdir: Path) -> Outcome:
    """Make the case `seed` of `kind` in a fresh folder under `workdir`, run it, remove the folder."""
    folder = Path(workdir) / f"{kind}_{seed}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = random.Random(f"{kind}:{seed}")
    mutations: list[str] = []
    make, run = CASES[kind]
    previous = Path.cwd()
    os.chdir(folder)  # relative outputs (e.g. a YAML tag's command) land in the case folder
    try:
        case = make(rng, seeds, folder, mutations)
        outcome, detail = run(case, seeds, folder)
    finally:
        os.chdir(previous)
        shutil.rmtree(folder, ignore_errors=True)
    return Outcome(kind, seed, outcome, detail, mutations)
