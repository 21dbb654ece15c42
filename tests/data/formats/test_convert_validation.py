"""The format converters check what a reader produced with the one validator's records (all counted)."""

from __future__ import annotations

import types

import pytest
from tests.data.formats.conftest import make_dataset

from streamvis.data.formats import convert as convert_module
from streamvis.data.formats import get_format
from streamvis.errors import DataFormatError


def _broken_reader(dataset):
    return types.SimpleNamespace(read_gt=lambda path: dataset)


def test_a_broken_conversion_counts_every_problem_and_writes_nothing(tmp_path, monkeypatch):
    data = make_dataset()
    data["annotations"][0]["segmentations"] = data["annotations"][0]["segmentations"][:2]  # length 2 != 5
    data["annotations"][1]["category_id"] = 77
    data["annotations"][1]["segmentations"][0] = {"size": [24, 32], "counts": "0o"}  # cut short
    formats = {"broken": _broken_reader(data), "ytvis": get_format("ytvis")}
    monkeypatch.setattr(convert_module, "get_format", formats.__getitem__)
    with pytest.raises(DataFormatError) as err:
        convert_module.convert("broken", tmp_path / "in", "ytvis", tmp_path / "out")
    text = str(err.value)
    assert text.startswith("the ground truth converted from broken has 3 errors (length_mismatch 1, "
                           "unknown_category 1, bad_segmentation 1); the first: ")
    assert f"{tmp_path / 'in'} (converted): annotations[0]" in text and "\n" not in text
    assert not (tmp_path / "out").exists()


def test_a_clean_conversion_passes_the_same_check(tmp_path, monkeypatch):
    formats = {"clean": _broken_reader(make_dataset()), "ytvis": get_format("ytvis")}
    monkeypatch.setattr(convert_module, "get_format", formats.__getitem__)
    summary = convert_module.convert("clean", tmp_path / "in", "ytvis", tmp_path / "out")
    assert summary.counts["videos"] == 2 and (tmp_path / "out").is_dir()
