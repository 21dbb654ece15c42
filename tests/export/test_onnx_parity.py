"""ONNX Runtime runs the exported network with the PyTorch outputs (1e-4) and the same detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.export.conftest import require_onnxruntime

from streamvis.data.masks import decode_rles
from streamvis.engine.predict import VideoPredictor, preprocess_frame
from streamvis.ops.image import normalize_and_pad
from streamvis.ops.misc import aligned_bilinear

RAW_TOLERANCE = 1e-4  # issue 13: raw outputs equal within 1e-4
# mask pixels may differ only where PyTorch's probability is this close to the 0.5 threshold
MASK_MARGIN = 1e-3


@pytest.fixture(scope="module")
def frame_models(onnx_exports):
    require_onnxruntime()
    from streamvis.export.backend import OnnxFrameModel

    return {name: OnnxFrameModel(path, threads=1) for name, path in onnx_exports.items()}


def _cases(name, golden_images, valid_frames, bundled_model):
    """Images (3, h, w) uint8 of each model's parity case; sizes differ so the dynamic axes are used."""
    if name == "rule_r18":
        return golden_images  # 360x640 -> padded 384x640
    frames = [valid_frames[0][0], valid_frames[1][3]]
    images = [preprocess_frame(f, bundled_model.config) for f in frames]  # 192x320
    return images + [images[0][:, :150, :270].contiguous()]  # odd size -> padded 160x288


@pytest.mark.parametrize("name", ["rule_r18", "bundled"])
def test_raw_outputs_equal_pytorch(name, frame_models, rule_model, bundled_model, golden_images,
                                   valid_frames):
    torch_model = {"rule_r18": rule_model, "bundled": bundled_model}[name]
    ort_model = frame_models[name]
    worst = 0.0
    for image in _cases(name, golden_images, valid_frames, bundled_model):
        batch, sizes = normalize_and_pad([image], torch_model.pixel_mean, torch_model.pixel_std)
        with torch.no_grad():
            expected = torch_model.forward_features(batch, image_sizes=sizes)
        got = ort_model.forward_features(batch, sizes)
        assert got.strides == expected.strides and got.image_sizes == expected.image_sizes
        for field in ("cls_logits", "bbox_reg", "ctrness", "controller_params", "reid_feats"):
            for level, (ours, theirs) in enumerate(zip(getattr(got, field), getattr(expected, field))):
                assert ours.shape == theirs.shape, f"{field} level {level}"
                torch.testing.assert_close(ours, theirs, rtol=0, atol=RAW_TOLERANCE,
                                           msg=lambda m, f=field, lv=level: f"{name} {f} p{lv + 3}: {m}")
                worst = max(worst, float((ours - theirs).abs().max()))
        torch.testing.assert_close(got.mask_feats, expected.mask_feats, rtol=0, atol=RAW_TOLERANCE)
        for ours, theirs in zip(got.locations, expected.locations):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert worst > 0.0  # a different runtime, not the same tensors handed back


def _assert_same_instances(got, ref, name):
    assert len(got) == len(ref) > 0, name
    assert got.classes.tolist() == ref.classes.tolist()
    assert got.fpn_levels.tolist() == ref.fpn_levels.tolist()
    torch.testing.assert_close(got.boxes, ref.boxes, rtol=0, atol=5e-4)
    torch.testing.assert_close(got.scores, ref.scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.embeddings, ref.embeddings, rtol=0, atol=RAW_TOLERANCE)
    torch.testing.assert_close(got.controller_params, ref.controller_params, rtol=0, atol=RAW_TOLERANCE)
    torch.testing.assert_close(got.global_mask_probs, ref.global_mask_probs, rtol=0, atol=RAW_TOLERANCE)
    height, width = ref.image_size
    probs = aligned_bilinear(ref.global_mask_probs[:, None], 4)[:, 0, :height, :width]
    uncertain = (probs - 0.5).abs() <= MASK_MARGIN
    assert not ((got.masks != ref.masks) & ~uncertain).any(), f"{name}: masks differ away from 0.5"


@pytest.mark.parametrize("name", ["rule_r18", "bundled"])
def test_same_detections(name, frame_models, rule_model, bundled_model, golden_images, valid_frames):
    torch_model = {"rule_r18": rule_model, "bundled": bundled_model}[name]
    images = _cases(name, golden_images, valid_frames, bundled_model)
    # one image per PyTorch call: a batch pads every image to the largest, and GroupNorm sees the
    # padding, while the exported network (batch 1) runs each image at its own padded size
    expected = [torch_model.predict([image])[0] for image in images]
    got = frame_models[name].predict(images)
    assert len(got) == len(images)
    if name == "rule_r18":
        assert [len(r) for r in expected] == [7, 6]  # the rule weights' detections on the golden images
    for index, (ours, theirs) in enumerate(zip(got, expected)):
        assert ours.image_size == theirs.image_size
        _assert_same_instances(ours, theirs, f"{name} image {index}")


def test_output_sizes_are_honoured(frame_models, bundled_model, valid_frames):
    image = preprocess_frame(valid_frames[0][1], bundled_model.config)
    (got,) = frame_models["bundled"].predict([image], output_sizes=[(96, 160)])
    (expected,) = bundled_model.predict([image], output_sizes=[(96, 160)])
    assert got.image_size == (96, 160) and got.masks.shape[-2:] == (96, 160)
    torch.testing.assert_close(got.boxes, expected.boxes, rtol=0, atol=5e-4)


def _track_results(model, tracker, frames):
    predictor = VideoPredictor(model, tracker, video_id=7)
    for frame in frames:
        predictor.update(frame)
    return predictor.finalize()


def _same_track(ours, theirs) -> bool:
    """Same video, class, score (1e-5), frames, and masks up to pixels at the 0.5 threshold."""
    present = [s is not None for s in theirs["segmentations"]]
    if (ours["video_id"], ours["category_id"]) != (theirs["video_id"], theirs["category_id"]):
        return False
    if abs(ours["score"] - theirs["score"]) > 1e-5:
        return False
    if [s is not None for s in ours["segmentations"]] != present:
        return False
    kept = [i for i, p in enumerate(present) if p]
    a = decode_rles([ours["segmentations"][i] for i in kept]).astype(bool)
    b = decode_rles([theirs["segmentations"][i] for i in kept]).astype(bool)
    return np.count_nonzero(a != b) <= 1e-4 * a.size


@pytest.mark.parametrize("video", [0, 1])
def test_the_crossvis_tracker_gives_the_same_tracks(video, frame_models, bundled_model, valid_frames):
    """VideoPredictor + the official CrossVIS tracker over a synthetic video: identical tracks."""
    ref = _track_results(bundled_model, "crossvis", valid_frames[video])
    got = _track_results(frame_models["bundled"], "crossvis", valid_frames[video])
    assert len(got) == len(ref) > 0
    assert all(_same_track(ours, theirs) for ours, theirs in zip(got, ref))


def test_the_default_tracker_runs_on_the_exported_model(frame_models, bundled_model, valid_frames):
    """The default tracker on both backends: most tracks identical.

    Not all: its Hungarian assignment maximises the summed similarity and only then drops pairs
    below match_threshold, so two same-class tracks whose rows differ by a constant are an exact
    tie (video 1, frame 5: assignments of equal total 13.1775911), broken by float noise of 1e-7;
    the per-frame detections themselves are identical (test_same_detections).
    """
    ref = _track_results(bundled_model, "default", valid_frames[1])
    got = _track_results(frame_models["bundled"], "default", valid_frames[1])
    assert abs(len(got) - len(ref)) <= 1 and len(ref) > 0
    same = sum(_same_track(ours, theirs) for ours, theirs in zip(got, ref))
    assert same >= 0.75 * len(ref)


def test_the_postprocessor_is_the_models_own_without_the_network(rule_model):
    """OnnxFrameModel post-processes with a CrossVIS whose backbone, FPN and mask branch are gone."""
    from streamvis.export.backend import build_postprocessor

    post = build_postprocessor(rule_model.config.replace(num_identities=0))  # 0: "derive from the data"
    assert post.backbone is None and post.fpn is None and post.mask_branch is None and post.criterion is None
    assert type(post).postprocess is type(rule_model).postprocess
    assert (post.score_threshold, post.detections_per_frame) == (rule_model.score_threshold,
                                                                 rule_model.detections_per_frame)
