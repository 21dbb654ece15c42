"""Official checkpoint conversion, `streamvis convert`, and `load_model`."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import require_shared

from streamvis.cli import main
from streamvis.errors import DataFormatError
from streamvis.models.build import build_model, preset
from streamvis.models.crossvis.convert import convert_official, infer_config
from streamvis.models.crossvis.rule_weights import read_key_table
from streamvis.models.weights import load_model

# our prefix -> official prefix (written independently of convert.py; first match wins)
TO_OFFICIAL = (("backbone.", "backbone.bottom_up."), ("fpn.lateral", "backbone.fpn_lateral"),
               ("fpn.output", "backbone.fpn_output"), ("fpn.p", "backbone.top_block.p"),
               ("head.controller.", "controller."), ("head.", "proposal_generator.fcos_head."),
               ("mask_branch.", "mask_branch."), ("criterion.embedding.cls.", "cls."))


def official_name(key: str) -> str:
    for ours, theirs in TO_OFFICIAL:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    raise KeyError(key)


@pytest.fixture(scope="module")
def small():
    """A small model and its weights under the official names (as an official checkpoint holds them)."""
    torch.manual_seed(0)
    model = build_model(preset("crossvis_r18_small").replace(num_classes=3, num_identities=7)).eval()
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    official = {official_name(k): v.clone() for k, v in model.state_dict().items()}
    official["mask_head.sizes_of_interest"] = torch.tensor([64, 128, 256, 512, 1024])
    official["mask_head._iter"] = torch.zeros(1)
    return model, official


@pytest.mark.parametrize("table,depth", [("state_dict_keys.tsv", 50), ("state_dict_keys_r101.tsv", 101)])
def test_official_keys_map_onto_our_model(table, depth):
    rows = read_key_table(require_shared(f"reference/crossvis/{table}"))
    official = {key: torch.empty(shape, dtype=dtype, device="meta") for key, shape, dtype in rows}
    official["mask_head.sizes_of_interest"] = torch.tensor([64, 128, 256, 512, 1024])
    state, cfg = convert_official({"model": official})
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = build_model(cfg)
    assert (cfg.depth, cfg.num_classes, cfg.num_identities, cfg.head_num_convs) == (depth, 40, 3774, 4)
    expected = model.state_dict()
    assert set(state) == set(expected)
    assert all(state[k].shape == expected[k].shape for k in state)
    assert len(state) == len(rows) - 2  # only mask_head.sizes_of_interest and _iter are dropped


def test_cli_convert_then_load_model(tmp_path, small, capsys):
    model, official = small
    torch.save({"model": official, "iteration": 5}, tmp_path / "official.pth")
    out = tmp_path / "weights.pth"
    assert main(["convert", "--official", str(tmp_path / "official.pth"), "--out", str(out),
                 "--class-names", "cat, dog,fish"]) == 0
    assert "crossvis, 3 classes" in capsys.readouterr().out
    loaded = load_model(out)
    cfg = loaded.config
    assert not loaded.training
    assert (cfg.depth, cfg.num_classes, cfg.num_identities, cfg.fpn_channels, cfg.head_num_convs,
            cfg.mask_branch_num_convs, cfg.reid_dim) == (18, 3, 7, 64, 2, 2, 64)
    assert cfg.class_names == ("cat", "dog", "fish")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)
    data = torch.load(out, weights_only=True)
    assert set(data) == {"format", "format_version", "method", "model", "config", "meta"}
    assert data["method"] == data["config"]["method"] == "crossvis" and data["format_version"] == 2
    assert data["meta"] == {"source": "official.pth", "converted_from": "official crossvis"}


def test_bare_state_dict_is_accepted(small):
    _, official = small
    state, cfg = convert_official(official)
    assert cfg.depth == 18 and "head.controller.weight" in state and "criterion.embedding.cls.bias" in state


def test_not_a_crossvis_checkpoint(tmp_path, small, capsys):
    _, official = small
    partial = {k: v for k, v in official.items() if not k.startswith("controller.")}
    torch.save({"model": partial}, tmp_path / "partial.pth")
    rc = main(["convert", "--official", str(tmp_path / "partial.pth"), "--out", str(tmp_path / "w.pth")])
    err = capsys.readouterr().err
    assert rc == 2 and "controller.weight" in err and "partial.pth" in err
    assert not (tmp_path / "w.pth").exists()
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(DataFormatError, match="state dict"):
        convert_official(torch.load(tmp_path / "tensor.pth", weights_only=True), path="tensor.pth")
    with pytest.raises(DataFormatError, match="unexpected key"):
        convert_official({**official, "roi_heads.box.weight": torch.zeros(1)})


def test_load_model_errors(tmp_path, small):
    _, official = small
    torch.save({"model": official}, tmp_path / "official.pth")
    with pytest.raises(DataFormatError, match="streamvis convert"):
        load_model(tmp_path / "official.pth")
    with pytest.raises(DataFormatError, match="no such"):
        load_model(tmp_path / "missing.pth")


def test_infer_config_reads_shapes(small):
    _, official = small
    cfg = infer_config(official, num_classes=3)
    assert cfg.mask_out_channels == 8 and cfg.mask_branch_channels == 64 and cfg.head_channels == 64
