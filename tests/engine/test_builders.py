"""`train.init_weights`: a streamvis checkpoint/weights file initialises the whole model (fine-tuning)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from streamvis.engine.builders import load_init_weights
from streamvis.errors import ConfigError, DataFormatError


class Net(nn.Module):
    def __init__(self, num_classes: int = 3, backbone_width: int = 4):
        super().__init__()
        self.backbone = nn.Conv2d(3, backbone_width, 3)
        self.head = nn.Linear(backbone_width, num_classes)
        self.neck = nn.Linear(backbone_width, backbone_width)


def save_streamvis(model: nn.Module, path, *, drop=()):
    state = {k: v for k, v in model.state_dict().items() if k not in drop}
    torch.save({"model": state, "config": {"num_classes": 3}, "iteration": 7}, path)
    return path


def test_a_streamvis_file_initialises_every_tensor(tmp_path):
    torch.manual_seed(0)
    source = Net()
    path = save_streamvis(source, tmp_path / "model_final.pth")
    target = Net()
    load_init_weights(target, str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_other_shapes_keep_their_init_and_are_named(tmp_path):
    torch.manual_seed(0)
    path = save_streamvis(Net(num_classes=3), tmp_path / "w.pth", drop=("neck.bias",))
    target = Net(num_classes=5)
    head_before = target.head.weight.clone()
    neck_bias_before = target.neck.bias.clone()
    with pytest.warns(UserWarning, match=r"w\.pth: initialised 3/6 .*head\.weight.*neck\.bias"):
        load_init_weights(target, str(path))
    assert torch.equal(target.head.weight, head_before)
    assert torch.equal(target.neck.bias, neck_bias_before)
    assert torch.equal(target.backbone.weight, torch.load(path)["model"]["backbone.weight"])


def test_another_architecture_is_refused(tmp_path):
    no_backbone = save_streamvis(Net(), tmp_path / "a.pth", drop=("backbone.weight",))
    with pytest.raises(DataFormatError, match=r"a\.pth.*lacks backbone tensors.*backbone\.weight"):
        load_init_weights(Net(), str(no_backbone))
    nothing = tmp_path / "b.pth"
    torch.save({"model": {"x.weight": torch.zeros(2)}, "config": {}}, nothing)
    with pytest.raises(DataFormatError, match=r"b\.pth.*no tensor of this file fits"):
        load_init_weights(Net(), str(nothing))


def test_other_files_go_to_the_imagenet_backbone_reader(tmp_path, monkeypatch):
    import streamvis.models.imagenet_weights as backbone_module

    calls = []
    monkeypatch.setattr(backbone_module, "load_imagenet_backbone", lambda b, p: calls.append(p))
    torchvision_like = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, torchvision_like)  # a plain state dict: not ours
    load_init_weights(Net(), str(torchvision_like))
    garbage = tmp_path / "R-18.pkl"
    garbage.write_bytes(b"x")
    load_init_weights(Net(), str(garbage))
    assert calls == [str(torchvision_like), str(garbage)]
    with pytest.raises(ConfigError, match="train.init_weights file not found"):
        load_init_weights(Net(), str(tmp_path / "missing.pth"))
