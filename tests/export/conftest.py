"""Fixtures of the ONNX tests: models, frames and their exports (built once per session).

Models: "rule_r18" is the small R-18 preset with the deterministic weights of
reference/crossvis/weights_rule.md (models/crossvis/rule_weights.py), run on the two golden 360x640 images;
"bundled" is the bundled default model (assets/default_model.pth) on synthetic validation frames.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

RULE_NUM_IDENTITIES = 10  # any value >= 3: the identity proxies are not part of inference


def require_onnxruntime():
    """Import onnx and onnxruntime, or skip (fail under CI, whose `dev` extra installs them)."""
    missing = []
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        reason = (f"{' and '.join(missing)} not installed: the ONNX export tests need the optional extra "
                  "`pip install streamvis[onnx]` (the `dev` extra includes it)")
        if os.environ.get("CI"):
            pytest.fail(reason + " — CI installs the dev extra, so this is an error there")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def golden_images() -> list[torch.Tensor]:
    """The two golden frames, (3, 360, 640) uint8 BGR."""
    npz = np.load(require_shared("reference/crossvis/golden_r50.npz"))
    return [torch.from_numpy(npz[f"image_{i}"]).permute(2, 0, 1).contiguous() for i in (0, 1)]


@pytest.fixture(scope="session")
def rule_model():
    """Small R-18 CrossVIS with the deterministic rule weights (7 and 6 detections on the golden images)."""
    from streamvis.models.build import build_model, preset
    from streamvis.models.crossvis.rule_weights import fill_with_rule

    config = preset("crossvis_r18_small").replace(num_identities=RULE_NUM_IDENTITIES)
    return fill_with_rule(build_model(config)).eval()


@pytest.fixture(scope="session")
def bundled_model():
    """The bundled default model (R-18, trained on the synthetic videos)."""
    from streamvis.assets import default_weights_path
    from streamvis.models.weights import load_model

    return load_model(default_weights_path())


@pytest.fixture(scope="session")
def valid_frames():
    """(H, W, 3) uint8 BGR frames of two synthetic validation videos (6 frames each)."""
    from streamvis.data.synthetic import SynthConfig, render_synthetic_video

    synth = SynthConfig(num_videos=2, seed=3, split="valid", frames=(6, 6))
    return [list(render_synthetic_video(synth, index).frames) for index in range(2)]


@pytest.fixture(scope="session")
def onnx_exports(tmp_path_factory, rule_model, bundled_model):
    """{"rule_r18": path, "bundled": path} float32 exports."""
    require_onnxruntime()
    from streamvis.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    paths = {}
    for name, model in (("rule_r18", rule_model), ("bundled", bundled_model)):
        paths[name] = folder / f"{name}.onnx"
        export_onnx(model, paths[name])
    return paths
