import math
import zlib

import torch

from streamvis.models.crossvis.rule_weights import (
    BBOX_BIAS_SHIFT,
    OFFICIAL_SPECIAL_KEYS,
    STREAMVIS_SPECIAL_KEYS,
    fill_with_rule,
    official_rule_state_dict,
    rule_value,
)


def test_rule_values_follow_weights_rule():
    conv = rule_value("head.cls_tower.0.weight", (4, 2, 3, 3))
    torch.manual_seed(0)  # the rule's generator is its own: the global seed must not matter
    assert torch.equal(conv, rule_value("head.cls_tower.0.weight", (4, 2, 3, 3)))
    g = torch.Generator().manual_seed(zlib.crc32(b"backbone.stem.conv1.weight"))
    stem = rule_value("backbone.stem.conv1.weight", (4, 2, 3, 3), special_keys=STREAMVIS_SPECIAL_KEYS)
    assert torch.allclose(stem, torch.randn((4, 2, 3, 3), generator=g) / math.sqrt(18) / 64)
    bias = rule_value("head.cls_logits.bias", (1000,), special_keys=STREAMVIS_SPECIAL_KEYS,
                      cls_bias_shift=-4.2)
    assert abs(bias.mean().item() + 4.2) < 0.02
    box = rule_value(OFFICIAL_SPECIAL_KEYS[2], (1000,))
    assert abs(box.mean().item() - BBOX_BIAS_SHIFT) < 0.02
    assert torch.all(rule_value("x.running_var", (50,)) > 0)
    assert rule_value("x.num_batches_tracked", ()) is None


def test_official_state_dict_special_buffers():
    rows = [("a.num_batches_tracked", (), torch.int64), ("mask_head.sizes_of_interest", (5,), torch.int64),
            ("mask_head._iter", (1,), torch.float32), ("b.weight", (3,), torch.float32)]
    state = official_rule_state_dict(rows)
    assert state["a.num_batches_tracked"].item() == 0
    assert state["mask_head.sizes_of_interest"].tolist() == [64, 128, 256, 512, 1024]
    assert state["mask_head._iter"].item() == 0
    assert torch.allclose(state["b.weight"], rule_value("b.weight", (3,)))


def test_fill_with_rule_changes_every_float_tensor():
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fill_with_rule(model)
    after = model.state_dict()
    for key, value in after.items():
        if value.is_floating_point():
            assert not torch.equal(value, before[key]), key
    assert torch.equal(after["1.num_batches_tracked"], before["1.num_batches_tracked"])
