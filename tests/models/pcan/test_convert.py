"""Official PCAN checkpoints -> streamvis weights (`convert_official`, ``streamvis convert --official``),
and the bad inputs: unknown layout, missing / unknown keys, weights of the other method."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import require_shared

from streamvis.cli import main
from streamvis.engine.builders import load_init_weights
from streamvis.errors import DataFormatError
from streamvis.models.build import build_model, preset
from streamvis.models.pcan.config import BDD100K_CLASSES
from streamvis.models.pcan.convert import convert_official
from streamvis.models.pcan.rule_weights import read_key_table
from streamvis.models.weights import load_model, save_weights


def official_name(key: str) -> str:
    """Our key -> the official one (written independently of convert.py: only mu0..mu4 move)."""
    return key[len("frame_attention."):] if key.startswith("frame_attention.mu") else key


@pytest.fixture(scope="module")
def small():
    """A tiny PCAN and its weights under the official names, as an mmcv checkpoint holds them."""
    torch.manual_seed(0)
    model = build_model(preset("pcan_r18_small").replace(num_classes=3, class_names=("a", "b", "c")))
    official = {official_name(k): v.clone() for k, v in model.state_dict().items()}
    return model, {"state_dict": official, "meta": {"mmdet_version": "2.10.0"}}


def test_small_checkpoint_round_trip(small):
    model, checkpoint = small
    state, config = convert_official(checkpoint, "small.pth")
    assert (config.depth, config.num_classes, config.fpn_channels, config.fc_channels) == (18, 3, 64, 256)
    assert (config.embed_channels, config.mask_conv_channels) == (128, 64)
    assert config.class_names is None  # 3 classes: not the BDD100K ones
    assert set(state) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key


def test_official_key_table_converts():
    """All 397 keys of the released model's state dict (pcan_state_dict_keys.tsv) map onto the model."""
    rows = read_key_table(require_shared("reference/pcan/pcan_state_dict_keys.tsv"))
    official = {key: torch.zeros(shape, dtype=getattr(torch, dtype)) for key, shape, dtype, _, _ in rows}
    state, config = convert_official(official, "pcan.pth")
    assert len(state) == len(official) == 397
    assert (config.depth, config.num_classes, config.class_names) == (50, 8, BDD100K_CLASSES)
    assert "frame_attention.mu0" in state and "mu0" not in state


def _message(err: pytest.ExceptionInfo) -> str:
    return str(err.value)


def test_missing_key_names_file_and_key(small):
    _, checkpoint = small
    broken = dict(checkpoint["state_dict"])
    del broken["roi_head.mask_head.conv_logits.bias"]
    with pytest.raises(DataFormatError) as err:
        convert_official(broken, "broken.pth")
    assert "broken.pth" in _message(err) and "roi_head.mask_head.conv_logits.bias" in _message(err)
    no_prototypes = dict(checkpoint["state_dict"])
    del no_prototypes["mu3"]
    with pytest.raises(DataFormatError, match="'mu3'"):
        convert_official(no_prototypes, "broken.pth")


def test_unknown_key_and_shape(small):
    _, checkpoint = small
    extra = dict(checkpoint["state_dict"], **{"roi_head.dice_head.weight": torch.zeros(1)})
    with pytest.raises(DataFormatError, match="roi_head.dice_head.weight"):
        convert_official(extra, "extra.pth")
    wrong = dict(checkpoint["state_dict"])
    wrong["roi_head.refine_head.pos_mu"] = torch.zeros(1, 64, 7)
    with pytest.raises(DataFormatError, match="roi_head.refine_head.pos_mu"):
        convert_official(wrong, "wrong.pth")


def test_not_a_pcan_checkpoint():
    crossvis_like = {"backbone.bottom_up.stem.conv1.weight": torch.zeros(64, 3, 7, 7)}
    with pytest.raises(DataFormatError, match="not an official PCAN") as err:
        convert_official(crossvis_like, "crossvis.pth")
    assert "mu0" in _message(err)
    with pytest.raises(DataFormatError, match="already a streamvis weights file"):
        convert_official({"format": "streamvis-weights", "model": {}, "config": {"method": "pcan"}}, "w.pth")


@pytest.mark.slow
def test_cli_convert_writes_loadable_weights(small, tmp_path):
    model, checkpoint = small
    source, out = tmp_path / "official.pth", tmp_path / "w.pth"
    torch.save(checkpoint, source)
    assert main(["convert", "--official", str(source), "--out", str(out)]) == 0
    loaded = load_model(out)
    assert loaded.config.method == "pcan" and loaded.config.num_classes == 3
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.slow
def test_cli_convert_bad_input_exit_2_nothing_written(small, tmp_path, capsys):
    _, checkpoint = small
    broken = dict(checkpoint["state_dict"])
    del broken["roi_head.track_head.fcs.0.weight"]
    source, out = tmp_path / "broken.pth", tmp_path / "w.pth"
    torch.save({"state_dict": broken}, source)
    assert main(["convert", "--official", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "broken.pth" in err and "roi_head.track_head.fcs.0.weight" in err
    assert not out.exists()


@pytest.mark.slow
def test_weights_of_the_other_method_are_refused(small, tmp_path):
    """PCAN weights as train.init_weights of a CrossVIS model, and the reverse: error naming the file."""
    pcan, _ = small
    crossvis = build_model(preset("crossvis_r18_small").replace(num_classes=3, num_identities=5))
    pcan_file = save_weights(tmp_path / "pcan.pth", pcan.state_dict(), pcan.config)
    crossvis_file = save_weights(tmp_path / "crossvis.pth", crossvis.state_dict(), crossvis.config)
    with pytest.raises(DataFormatError, match="'pcan' model but this config builds a 'crossvis'") as err:
        load_init_weights(crossvis, str(pcan_file))
    assert "pcan.pth" in _message(err)
    with pytest.raises(DataFormatError, match="'crossvis' model but this config builds a 'pcan'"):
        load_init_weights(pcan, str(crossvis_file))
