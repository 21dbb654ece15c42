"""Our PCAN parts load the official checkpoint keys one-to-one (pcan_state_dict_keys.tsv)."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import require_shared

from streamvis.errors import DataFormatError
from streamvis.models.pcan.embed_head import QuasiDenseEmbedHead
from streamvis.models.pcan.frame_attention import FrameAttention
from streamvis.models.pcan.official import OFFICIAL_PREFIXES, load_official_part
from streamvis.models.pcan.refine_head import EMMatchHeadPlus
from streamvis.models.pcan.rule_weights import official_rule_state_dict, read_key_table

PARTS = {"frame_attention": FrameAttention, "track_head": QuasiDenseEmbedHead, "refine_head": EMMatchHeadPlus}


@pytest.fixture(scope="module")
def official():
    rows = read_key_table(require_shared("reference/pcan/pcan_state_dict_keys.tsv"))
    return official_rule_state_dict(rows)


@pytest.mark.parametrize("part", sorted(PARTS))
def test_every_official_key_of_the_part_loads(official, part):
    prefix = OFFICIAL_PREFIXES[part]
    module = load_official_part(PARTS[part](), official, prefix, path="ckpt.pth")
    ours = module.state_dict()
    for key, value in ours.items():
        torch.testing.assert_close(value, official[prefix + key], rtol=0, atol=0)
    if prefix:  # every official key under the prefix is one of ours
        assert {k for k in official if k.startswith(prefix)} == {prefix + k for k in ours}
    else:
        assert {k for k in official if "." not in k} == set(ours)


def test_missing_unknown_and_misshaped_keys_name_file_and_key(official):
    broken = dict(official)
    del broken["roi_head.refine_head.pos_mu"]
    with pytest.raises(DataFormatError, match=r"ckpt\.pth.*roi_head\.refine_head\.pos_mu"):
        load_official_part(EMMatchHeadPlus(), broken, "roi_head.refine_head.", path="ckpt.pth")
    extra = dict(official, **{"roi_head.track_head.fcs.1.weight": torch.zeros(1)})
    with pytest.raises(DataFormatError, match=r"fcs\.1\.weight.*unknown key"):
        load_official_part(QuasiDenseEmbedHead(), extra, "roi_head.track_head.", path="ckpt.pth")
    small = dict(official, mu1=torch.zeros(1, 256, 20))
    with pytest.raises(DataFormatError, match=r"field .mu1.*\(1, 256, 20\)"):
        load_official_part(FrameAttention(), small, "", path="ckpt.pth")
