"""The CLI of the exported network: `streamvis export --onnx`, `streamvis predict --backend/--precision`.

A tiny randomly initialised CrossVIS (R-18, 32-channel FPN, 64x96 test size) on a generated
two-video dataset keeps every command to about a second.
"""

from __future__ import annotations

import json
import sys

import pytest
from tests.export.conftest import require_onnxruntime
from tests.tiny_weights import write_tiny_crossvis

from streamvis.cli import main

SCORE_TOLERANCE = 1e-4  # issue 13: the exported network's outputs equal PyTorch's within 1e-4


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return write_tiny_crossvis(tmp_path_factory.mktemp("weights") / "tiny.pth")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from streamvis.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("valid"), num_videos=2, seed=2, split="valid",
                            size=(48, 64), frames=(3, 3), num_classes=3, workers=1)


def _predict(weights, dataset, out, *extra) -> int:
    return main(["predict", "--weights", str(weights), "--input", str(dataset), "--out", str(out),
                 "--no-progress", *extra])


def _results(out) -> list[dict]:
    return json.loads((out / "results.json").read_text())


def test_export_onnx_then_predict_with_onnxruntime_equals_torch(tiny_weights, tiny_dataset, tmp_path, capsys):
    require_onnxruntime()
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export", "--weights", str(tiny_weights), "--onnx", str(onnx_path)]) == 0
    assert "crossvis, float32" in capsys.readouterr().out and onnx_path.is_file()
    assert _predict(tiny_weights, tiny_dataset, tmp_path / "torch") == 0
    assert _predict(onnx_path, tiny_dataset, tmp_path / "ort", "--backend", "onnxruntime") == 0
    ref, got = _results(tmp_path / "torch"), _results(tmp_path / "ort")
    assert len(got) == len(ref) > 0
    for ours, theirs in zip(got, ref):
        assert (ours["video_id"], ours["category_id"]) == (theirs["video_id"], theirs["category_id"])
        assert abs(ours["score"] - theirs["score"]) <= SCORE_TOLERANCE
        assert [s is None for s in ours["segmentations"]] == [s is None for s in theirs["segmentations"]]
    # a weights file with --backend onnxruntime is exported on the fly: the same results again
    assert _predict(tiny_weights, tiny_dataset, tmp_path / "ort2", "--backend", "onnxruntime") == 0
    assert _results(tmp_path / "ort2") == got


def test_int8_export_and_predict(tiny_weights, tiny_dataset, tmp_path, capsys):
    require_onnxruntime()
    int8 = tmp_path / "int8.onnx"
    argv = ["export", "--weights", str(tiny_weights), "--onnx", str(int8), "--precision", "int8",
            "--calibration-data", str(tiny_dataset), "--calibration-frames", "2"]
    assert main(argv) == 0
    assert "crossvis, int8" in capsys.readouterr().out
    ort = ("--backend", "onnxruntime", "--precision")
    assert _predict(int8, tiny_dataset, tmp_path / "a", *ort, "int8") == 0
    assert {r["video_id"] for r in _results(tmp_path / "a")} <= {1, 2}
    # the same file asked for float32: refused, nothing written
    assert _predict(int8, tiny_dataset, tmp_path / "b", *ort, "float32") == 2
    assert "holds an int8 network, not float32" in capsys.readouterr().err
    assert not (tmp_path / "b" / "results.json").exists()
    # on-the-fly quantization of a weights file (synthetic calibration frames)
    assert _predict(tiny_weights, tiny_dataset, tmp_path / "c", "--backend", "onnxruntime",
                    "--precision", "int8") == 0
    assert (tmp_path / "c" / "results.json").is_file()


def test_precision_int8_needs_the_onnxruntime_backend(tiny_weights, tiny_dataset, tmp_path, capsys):
    assert _predict(tiny_weights, tiny_dataset, tmp_path / "out", "--precision", "int8") == 2
    err = capsys.readouterr().err
    assert "--precision int8 runs only on --backend onnxruntime" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "results.json").exists()
    with pytest.raises(SystemExit) as info:  # argparse: an unknown backend is a usage error
        _predict(tiny_weights, tiny_dataset, tmp_path / "out", "--backend", "tensorrt")
    assert info.value.code == 2


def test_missing_onnxruntime_says_how_to_install(monkeypatch, tiny_weights, tiny_dataset, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    assert _predict(tiny_weights, tiny_dataset, tmp_path / "out", "--backend", "onnxruntime") == 2
    err = capsys.readouterr().err
    assert err.startswith("streamvis predict: error: the ONNX Runtime backend (--backend onnxruntime) needs "
                          "the Python package 'onnxruntime'")
    assert "pip install streamvis[onnx]" in err and "--backend torch" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_missing_onnx_fails_the_export_cleanly(monkeypatch, tiny_weights, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", "--weights", str(tiny_weights), "--onnx", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "exporting to ONNX needs the Python package 'onnx'" in err and "pip install streamvis[onnx]" in err
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--onnx", "x.onnx"], "give it as --weights W.pth"),
    (["--weights", "W", "--onnx", "x.onnx", "--out", "y.pth"], "drop --out"),
    (["--weights", "W", "--onnx", "x.onnx", "--half"], "drop --half"),
    (["--weights", "W", "--onnx", "x.onnx", "--calibration-frames", "0"], "at least 1"),
    (["--weights", "W", "--out", "y.pth"], "give --checkpoint C.pth --out W.pth"),
    (["--checkpoint", "W", "--out", "y.pth", "--precision", "int8"], "add --onnx W.onnx"),
    (["--weights", "missing.pth", "--onnx", "x.onnx"], "missing.pth: no such weights file"),
])
def test_export_argument_errors(argv, message, tiny_weights, tmp_path, capsys):
    argv = [str(tiny_weights) if a == "W" else str(tmp_path / a) if a.endswith((".onnx", ".pth")) else a
            for a in argv]
    assert main(["export", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
