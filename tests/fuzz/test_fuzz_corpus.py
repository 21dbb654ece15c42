"""Fuzz corpus (bounded): every mutated input ends in success or a one-paragraph streamvis error.

Cases come from `tests/fuzz/corpus.py` (see its docstring for the kinds, the entry points and the
outcomes); hypothesis draws the case seeds, derandomised, so every run tries the same cases.
``benchmarks/fuzz_corpus.py`` runs the same corpus at thousands of cases.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fuzz import corpus

# examples per kind: small enough that the whole file adds well under a minute to `make test`
EXAMPLES = {
    "annotation_json": 40, "results_json": 25, "frame_folder": 12, "mp4": 12, "config": 30, "weights": 12
}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return corpus.Seeds(tmp_path_factory.mktemp("fuzz_seeds"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_cases")


def _check(kind, seed, seeds, workdir):
    outcome = corpus.run_case(kind, seed, seeds, workdir)
    assert outcome.good, (
        f"{kind} case {seed} ({'; '.join(outcome.mutations)}): {outcome.outcome}: {outcome.detail}"
    )
    return outcome


def _fuzz(kind):
    @settings(
        max_examples=EXAMPLES[kind], deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
    )
    @given(seed=st.integers(0, 2**31 - 1))
    def test(seeds, workdir, seed):
        _check(kind, seed, seeds, workdir)

    test.__name__ = f"test_fuzz_{kind}"
    test.__doc__ = f"{EXAMPLES[kind]} mutated {kind.replace('_', ' ')} cases: success or a clean error."
    return test


test_fuzz_annotation_json = _fuzz("annotation_json")
test_fuzz_results_json = _fuzz("results_json")
test_fuzz_frame_folder = _fuzz("frame_folder")
test_fuzz_mp4 = _fuzz("mp4")
test_fuzz_config = _fuzz("config")
test_fuzz_weights = _fuzz("weights")


def test_the_seed_inputs_succeed(seeds, workdir):
    """Unmutated inputs are accepted everywhere (so "error" outcomes come from the mutations)."""
    from streamvis.commands.check_dataset import check_dataset
    from streamvis.data.ytvis import load_results, load_ytvis

    assert load_ytvis(seeds.gt_json) == seeds.gt
    assert load_results(seeds.results, seeds.gt) == seeds.results
    report = check_dataset(seeds.gt_json, seeds.images)
    assert report.num_errors == 0 and report.num_frames == 5
    for kind, make_input in {
        "annotation_json": lambda folder: seeds.gt_json,
        "results_json": lambda folder: _write(folder / "results.json", json.dumps(seeds.results)),
        "frame_folder": lambda folder: seeds.images,
        "mp4": lambda folder: seeds.mp4,
    }.items():
        folder = workdir / f"seed_{kind}"
        folder.mkdir()
        run = corpus.CASES[kind][1]
        assert run(make_input(folder), seeds, folder) == ("ok", ""), kind


def _write(path, text):
    path.write_text(text)
    return path


def _pickle_loaders(tmp_path):
    """name -> callable(path) -> (outcome, detail), for every reader of weights / checkpoint files."""
    from streamvis.engine.checkpoint import load_checkpoint
    from streamvis.models.imagenet_weights import load_torchvision_resnet, read_numpy_pickle
    from streamvis.models.weights import load_model

    def cli(command, flag, *extra):
        out = tmp_path / f"{command}_out.pth"
        return lambda path: corpus.run_cli(
            [command, flag, str(path), "--out", str(out), *extra], outputs=[out], folder=tmp_path
        )

    def library(name, function):
        return lambda path: corpus.run_library(name, function, path)[:2]

    return {
        "load_model": library("load_model", load_model),  # predict, render's model
        "load_checkpoint": library("load_checkpoint", load_checkpoint),  # train --resume, export
        "read_numpy_pickle": library("read_numpy_pickle", read_numpy_pickle),  # detectron2 .pkl backbones
        "load_torchvision_resnet": library("load_torchvision_resnet", load_torchvision_resnet),
        "convert": cli("convert", "--official"),
        "export": cli("export", "--checkpoint"),
        "demo": cli("demo", "--weights", "--videos", "1", "--no-video", "--no-progress"),
    }


@pytest.mark.parametrize("form", ["torch", "legacy", "plain"])
@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_a_pickle_that_would_run_a_command_never_runs(tmp_path, form, suffix):
    """Every weights/checkpoint reader refuses the file; the command in it never runs."""
    marker = tmp_path / "pwned"
    path = corpus.malicious_weights(tmp_path / f"evil{suffix}", marker, form=form)
    for name, load in _pickle_loaders(tmp_path).items():
        outcome, _ = load(path)
        assert not marker.exists(), f"{name} ran the pickle's command"
        # the numpy-only reader stops at a legacy torch file's first pickle (a magic number) unharmed
        if not (name == "read_numpy_pickle" and form == "legacy"):
            assert outcome != "ok", f"{name} accepted a file whose pickle runs a command"


LOADERS = ["load_model", "load_checkpoint", "read_numpy_pickle", "load_torchvision_resnet", "convert",
           "export", "demo"]
# a legacy torch file starts with a plain pickle of a magic number, which the numpy-only reader reads
REFUSALS = [(loader, form) for loader in LOADERS for form in ("torch", "legacy", "plain")
            if (loader, form) != ("read_numpy_pickle", "legacy")]


@pytest.mark.parametrize(("loader", "form"), REFUSALS)
def test_a_code_running_pickle_is_refused_with_one_clean_paragraph(tmp_path, loader, form):
    """One paragraph naming what the pickle asked for; never torch's text advising weights_only=False."""
    marker = tmp_path / "pwned"
    path = corpus.malicious_weights(tmp_path / "evil.pth", marker, form=form)
    outcome, detail = _pickle_loaders(tmp_path)[loader](path)
    assert outcome == "error", detail
    assert "weights_only=False" not in detail and "weights_only` set to `False" not in detail, detail
    if loader != "read_numpy_pickle":  # the numpy-only unpickler has its own wording
        expected = "posix.system" if form != "plain" else "Unsupported operand"
        assert "refused" in detail and expected in detail, detail
    assert not marker.exists()


def test_the_marker_would_be_made_if_unpickled_unsafely(tmp_path):
    """The malicious file is real: plain unpickling runs its command (so the refusals mean something)."""
    import pickle

    marker = tmp_path / "pwned"
    path = corpus.malicious_weights(tmp_path / "evil.pkl", marker, form="plain")
    cwd = os.getcwd()
    try:
        pickle.loads(path.read_bytes())  # noqa: S301 (deliberately unsafe, on our own file)
    finally:
        os.chdir(cwd)
    assert marker.exists()


def test_a_weights_file_with_a_non_tensor_value_is_a_clean_error(seeds, tmp_path):
    import torch

    from streamvis.models.weights import load_model

    data = torch.load(seeds.weights, map_location="cpu", weights_only=True)
    data["model"][sorted(data["model"])[0]] = [1.0, 2.0]
    torch.save(data, tmp_path / "w.pth")
    outcome, detail, _ = corpus.run_library("load_model", load_model, tmp_path / "w.pth")
    assert outcome == "error", detail
    assert "must map names to tensors" in detail and "list" in detail, detail


def test_a_config_integer_past_4300_digits_is_a_config_error(tmp_path):
    from streamvis.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("seed: " + "9" * 5000 + "\n")
    outcome, detail, _ = corpus.run_library("load_config", load_config, path, [])
    assert outcome == "error", detail
    assert "c.yaml" in detail and "more than 4300 digits" in detail, detail
    outcome, detail, _ = corpus.run_library("load_config", load_config, None, ["seed=" + "9" * 5000])
    assert outcome == "error" and "override 'seed=999" in detail, detail


@pytest.mark.parametrize(("kind", "seed"), [("annotation_json", 3), ("results_json", 5), ("mp4", 1)])
def test_cases_through_a_child_process(seeds, workdir, kind, seed, monkeypatch):
    """A few cases via ``python -m streamvis``: real stdout encoding; a native crash is seen, not fatal."""
    monkeypatch.setattr(corpus, "SUBPROCESS", True)
    _check(kind, seed, seeds, workdir)


def test_lone_surrogates_in_names_are_printed_escaped(tmp_path):
    """json allows "\\ud800"; printing it to a UTF-8 stdout raised UnicodeEncodeError (check-dataset)."""
    gt = {
        "videos": [{"id": 1, "width": 4, "height": 4, "length": 1, "file_names": ["\ud800.jpg"]}],
        "categories": [{"id": 1, "name": "\ud800"}], "annotations": []
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    code, stderr = corpus._run_subprocess(
        ["check-dataset", "--gt", str(tmp_path / "gt.json"), "--images", str(tmp_path), "--no-progress"]
    )
    assert code == 1 and "Traceback" not in stderr, stderr


@pytest.mark.parametrize(("kind", "seed"), [("mp4", 0), ("mp4", 4), ("frame_folder", 1), ("frame_folder", 2)])
def test_cases_through_predict(seeds, workdir, kind, seed, monkeypatch):
    """A few video inputs also through `streamvis predict` (tiny model; benchmark --predict: all)."""
    monkeypatch.setattr(corpus, "PREDICT", True)
    _check(kind, seed, seeds, workdir)
