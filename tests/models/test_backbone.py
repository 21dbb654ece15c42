"""ResNet backbone: layout, norms (FrozenBN / BN / GN), freezing, BN folding, the ImageNet weight loaders."""

from __future__ import annotations

import copy
import os
import pickle
import re

import numpy as np
import pytest
import torch
from torch import nn

from streamvis.errors import DataFormatError
from streamvis.models.backbone import NORMS, FrozenBatchNorm2d, ResNet, fold_frozen_batchnorm
from streamvis.models.imagenet_weights import (
    load_backbone_weights,
    load_detectron2_resnet,
    load_imagenet_backbone,
    read_numpy_pickle,
)


@torch.no_grad()
def _randomize_frozen_bn(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d)):
            n = m.num_features
            m.weight.copy_(1 + 0.1 * torch.randn(n, generator=g))
            m.bias.copy_(0.1 * torch.randn(n, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


def test_frozen_bn_formula():
    bn = FrozenBatchNorm2d(3)
    _randomize_frozen_bn(bn)
    x = torch.randn(2, 3, 4, 5)
    scale = bn.weight / torch.sqrt(bn.running_var + 1e-5)
    shift = bn.bias - bn.running_mean * scale
    torch.testing.assert_close(bn(x), x * scale.view(1, 3, 1, 1) + shift.view(1, 3, 1, 1))
    assert list(dict(bn.named_parameters())) == []  # all buffers: never trained


@pytest.mark.parametrize("depth,blocks,channels", [(18, (2, 2, 2, 2), [128, 256, 512]),
                                                   (34, (3, 4, 6, 3), [128, 256, 512]),
                                                   (50, (3, 4, 6, 3), [512, 1024, 2048]),
                                                   (101, (3, 4, 23, 3), [512, 1024, 2048])])
def test_resnet_layout(depth, blocks, channels):
    with torch.device("meta"):
        net = ResNet(depth=depth)
    assert tuple(len(getattr(net, f"res{i}")) for i in (2, 3, 4, 5)) == blocks
    assert net.out_channels == channels
    first = net.res3[0]
    if depth >= 50:  # official STRIDE_IN_1X1: the stride sits in the first 1x1 conv
        assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
        assert net.res2[0].shortcut is not None and net.res2[0].shortcut.stride == (1, 1)
    else:
        assert first.conv1.stride == (2, 2) and net.res2[0].shortcut is None
    assert first.shortcut.stride == (2, 2)


@pytest.fixture(scope="module")
def resnet18():
    net = ResNet(depth=18, freeze_at=2).eval()
    _randomize_frozen_bn(net)
    return net


def test_resnet_forward_shapes_and_freezing(resnet18):
    with torch.no_grad():
        outs = resnet18(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 128, 8, 12), (1, 256, 4, 6), (1, 512, 2, 3)]
    assert not any(p.requires_grad for p in resnet18.stem.parameters())
    assert not any(p.requires_grad for p in resnet18.res2.parameters())
    assert all(p.requires_grad for p in resnet18.res3.parameters())
    with torch.device("meta"):
        assert all(p.requires_grad for p in ResNet(depth=18, freeze_at=0).stem.parameters())


def test_fold_frozen_batchnorm_keeps_outputs(resnet18):
    net = copy.deepcopy(resnet18)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
        fold_frozen_batchnorm(net)
        got = net(x)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in net.modules())
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


def _torchvision_name(ours: str) -> str:
    """Our key -> torchvision's (written independently of the loader's renaming)."""
    key = ours.replace("stem.conv1.norm.", "bn1.").replace("stem.conv1.", "conv1.")
    key = re.sub(r"^res(\d)", lambda m: f"layer{int(m.group(1)) - 1}", key)
    key = key.replace(".shortcut.norm.", ".downsample.1.").replace(".shortcut.", ".downsample.0.")
    return re.sub(r"\.conv(\d)\.norm\.", r".bn\1.", key)


def test_load_torchvision_resnet18(tmp_path, resnet18):
    # every tensor is a distinct constant (a stride-0 view: a tiny file), except the stem, whose
    # input channels the loader reverses (RGB -> BGR)
    items = resnet18.state_dict().items()
    source = {k: torch.tensor([float(i)]).expand(v.shape) for i, (k, v) in enumerate(items)}
    source["stem.conv1.weight"] = torch.randn(64, 3, 7, 7)
    state = {_torchvision_name(k): v for k, v in source.items()}
    state["fc.weight"] = torch.zeros(10, 512)
    state["bn1.num_batches_tracked"] = torch.tensor(5)
    assert "layer2.0.downsample.1.running_var" in state and "layer1.0.bn2.weight" in state
    torch.save(state, tmp_path / "resnet18.pth")
    target = copy.deepcopy(resnet18)
    load_imagenet_backbone(target, tmp_path / "resnet18.pth")
    for key, value in source.items():
        expected = value.flip(1) if key == "stem.conv1.weight" else value
        torch.testing.assert_close(target.state_dict()[key], expected, msg=key)


def test_load_backbone_weights_names_missing_keys(resnet18):
    state = dict(resnet18.state_dict())
    del state["res4.1.conv2.weight"]
    with pytest.raises(DataFormatError, match=r"res4\.1\.conv2\.weight"):
        load_backbone_weights(copy.deepcopy(resnet18), state)


def test_load_detectron2_pickle(tmp_path):
    blobs = {
        "conv1_w": np.full((64, 3, 7, 7), 0.5, np.float32),
        "res_conv1_bn_s": np.full(64, 2.0, np.float32),
        "res_conv1_bn_b": np.full(64, -1.0, np.float32),
        "res2_0_branch2a_w": np.ones((64, 64, 1, 1), np.float32),
        "res2_0_branch1_bn_s": np.ones(256, np.float32),
        "res3_1_branch2c_bn_b": np.zeros(512, np.float32),
        "conv1_w_momentum": np.zeros((64, 3, 7, 7), np.float32),
        "fc1000_w": np.zeros((1000, 2048), np.float32),
    }
    with open(tmp_path / "R-50.pkl", "wb") as f:
        pickle.dump({"blobs": blobs, "__author__": "test"}, f, protocol=2)
    state = load_detectron2_resnet(tmp_path / "R-50.pkl")
    assert set(state) == {
        "stem.conv1.weight", "stem.conv1.norm.weight", "stem.conv1.norm.bias", "stem.conv1.norm.running_mean",
        "stem.conv1.norm.running_var", "res2.0.conv1.weight", "res2.0.shortcut.norm.weight",
        "res2.0.shortcut.norm.running_mean", "res2.0.shortcut.norm.running_var", "res3.1.conv3.norm.bias"}
    assert state["stem.conv1.norm.weight"][0] == 2.0 and state["stem.conv1.norm.running_var"][0] == 1.0
    assert state["stem.conv1.norm.running_mean"].abs().sum() == 0


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_loader_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"model": {"conv1_w": _Exploit(marker)}}, f)
    with pytest.raises(DataFormatError, match="refusing"):
        read_numpy_pickle(tmp_path / "evil.pkl")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------
# norms: FrozenBN (official), BN and GN (trainable, for a backbone trained from scratch)
# ------------------------------------------------------------------------------------------------

NORM_TYPES = {"FrozenBN": FrozenBatchNorm2d, "BN": nn.BatchNorm2d, "GN": nn.GroupNorm}


@pytest.fixture(scope="module")
def unfrozen_nets():
    torch.manual_seed(0)
    return {norm: ResNet(depth=18, freeze_at=0, norm=norm) for norm in NORMS}


def test_every_norm_keeps_names_and_shapes(unfrozen_nets):
    x = torch.randn(2, 3, 64, 64)
    for norm, net in unfrozen_nets.items():
        assert type(net.res4[1].conv2.norm) is type(net.stem.conv1.norm) is NORM_TYPES[norm]
        with torch.no_grad():
            outs = net.train()(x)
        assert [tuple(o.shape) for o in outs] == [(2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)], norm
    assert unfrozen_nets["GN"].res5[0].conv1.norm.num_groups == 32
    frozen, bn, gn = (set(unfrozen_nets[n].state_dict()) for n in ("FrozenBN", "BN", "GN"))
    assert bn - frozen == {k[: -len("running_mean")] + "num_batches_tracked"
                           for k in frozen if k.endswith("running_mean")} and not frozen - bn
    assert gn == {k for k in frozen if not k.endswith(("running_mean", "running_var"))}
    assert "res2.0.conv1.norm.weight" in gn and "res3.0.shortcut.norm.bias" in gn
    with pytest.raises(ValueError, match="GN"):
        ResNet(depth=18, norm="SyncBN")


@pytest.mark.parametrize("norm", ["BN", "GN"])
def test_trainable_norms_train_after_freeze_at_only(norm):
    torch.manual_seed(0)
    net = ResNet(depth=18, freeze_at=2, norm=norm).train()
    _randomize_frozen_bn(net.stem)  # BN turned FrozenBN: its statistics must survive a train-mode forward
    stem_stats = {k: v.clone() for k, v in net.stem.state_dict().items()}
    frozen_type = FrozenBatchNorm2d if norm == "BN" else nn.GroupNorm  # official: frozen BN -> FrozenBN
    assert type(net.stem.conv1.norm) is frozen_type and type(net.res2[1].conv2.norm) is frozen_type
    assert type(net.res3[0].conv1.norm) is NORM_TYPES[norm]
    assert not any(p.requires_grad for p in [*net.stem.parameters(), *net.res2.parameters()])
    norm_params = [p for m in net.res3.modules() if isinstance(m, NORM_TYPES[norm]) for p in m.parameters()]
    assert len(norm_params) == 2 * 5 and all(p.requires_grad for p in norm_params)  # 4 convs + shortcut
    sum(o.square().mean() for o in net(torch.randn(2, 3, 64, 64))).backward()
    assert net.res3[0].conv1.norm.weight.grad.abs().sum() > 0
    assert net.res5[1].conv2.norm.bias.grad.abs().sum() > 0
    assert net.stem.conv1.weight.grad is None and net.res2[0].conv1.weight.grad is None
    for key, value in net.stem.state_dict().items():
        torch.testing.assert_close(value, stem_stats[key], rtol=0, atol=0, msg=key)
    if norm == "BN":  # trainable BN does update its running statistics
        assert net.res3[0].conv1.norm.num_batches_tracked.item() == 1


def test_fold_leaves_groupnorm_and_train_mode_batchnorm(unfrozen_nets):
    x = torch.randn(1, 3, 32, 32)
    gn = copy.deepcopy(unfrozen_nets["GN"]).eval()
    with torch.no_grad():
        expected = gn(x)
        fold_frozen_batchnorm(gn)
        torch.testing.assert_close(gn(x), expected, rtol=0, atol=0)
    assert sum(isinstance(m, nn.GroupNorm) for m in gn.modules()) == 20  # stem + 16 convs + 3 shortcuts
    bn = copy.deepcopy(unfrozen_nets["BN"])
    _randomize_frozen_bn(bn)
    fold_frozen_batchnorm(bn.train())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 20  # batch statistics: not foldable
    bn.eval()
    with torch.no_grad():
        expected = bn(x)
        fold_frozen_batchnorm(bn)
        got = bn(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


def test_imagenet_weights_into_bn_and_gn_backbones(resnet18):
    state = dict(resnet18.state_dict())  # FrozenBN keys, as the ImageNet loaders return them
    bn = ResNet(depth=18, freeze_at=2, norm="BN")
    load_backbone_weights(bn, state)
    for key, value in state.items():  # frozen (FrozenBN) and trainable (BN) stages alike
        torch.testing.assert_close(bn.state_dict()[key], value, rtol=0, atol=0, msg=key)
    gn = ResNet(depth=18, freeze_at=2, norm="GN")
    with pytest.warns(UserWarning, match=r"GroupNorm.*conv weights.*80 BatchNorm tensors.*skipped"):
        load_backbone_weights(gn, state, path="R-18.pth")
    torch.testing.assert_close(gn.res4[1].conv2.weight, state["res4.1.conv2.weight"], rtol=0, atol=0)
    assert torch.equal(gn.res4[1].conv2.norm.weight, torch.ones(256))  # GN keeps its init
    assert torch.equal(gn.res4[1].conv2.norm.bias, torch.zeros(256))
    del state["res3.0.shortcut.weight"]
    with pytest.warns(UserWarning), pytest.raises(DataFormatError, match=r"res3\.0\.shortcut\.weight"):
        load_backbone_weights(gn, state)
