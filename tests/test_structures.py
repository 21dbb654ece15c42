import pytest
import torch

from streamvis.structures import Instances


def make(n=3):
    return Instances(
        (10, 20),
        boxes=torch.arange(n * 4, dtype=torch.float32).reshape(n, 4),
        scores=torch.linspace(0, 1, n),
        names=[f"i{k}" for k in range(n)],
    )


def test_index_by_int_slice_mask_and_tensor():
    inst = make()
    assert len(inst[1]) == 1 and inst[1].names == ["i1"]
    assert inst[-1].names == ["i2"]
    assert inst[1:].names == ["i1", "i2"]
    sel = inst[torch.tensor([True, False, True])]
    assert sel.names == ["i0", "i2"]
    assert torch.equal(sel.scores, inst.scores[[0, 2]])
    assert inst[torch.tensor([2, 0])].names == ["i2", "i0"]


def test_length_mismatch_is_refused():
    inst = make()
    with pytest.raises(ValueError, match="length"):
        inst.track_ids = torch.zeros(2)


def test_cat_and_to():
    both = Instances.cat([make(2), make(3)])
    assert len(both) == 5 and both.boxes.shape == (5, 4) and len(both.names) == 5
    assert both.to(torch.float64).scores.dtype == torch.float64
    with pytest.raises(ValueError, match="image sizes"):
        Instances.cat([make(1), Instances((1, 1), scores=torch.zeros(1), boxes=torch.zeros(1, 4))])


def test_empty_and_unknown_field():
    empty = Instances((4, 4))
    assert len(empty) == 0
    with pytest.raises(AttributeError, match="no field"):
        _ = empty.scores
