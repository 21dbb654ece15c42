"""The PCAN weight rule (golden.md) reproduces the generator's checksums, bit for bit."""

from __future__ import annotations

import hashlib

from tests.conftest import require_shared

from streamvis.models.pcan.rule_weights import head_rule_value, official_rule_state_dict, read_key_table

REFERENCE = "reference/pcan"


def _sha16(tensor) -> str:
    return hashlib.sha256(tensor.numpy().tobytes()).hexdigest()[:16]


def test_head_rule_matches_weights_rule_checksums():
    lines = require_shared(f"{REFERENCE}/weights_rule_checksums.tsv").read_text().splitlines()[1:]
    assert len(lines) == 42
    for line in lines:
        name, shape, *_rest, first, sha = line.split("\t")
        value = head_rule_value(name, tuple(int(v) for v in shape.split("x")))
        assert _sha16(value) == sha, name
        assert float(value.flatten()[0]) == float(first), name


def test_whole_model_rule_matches_state_dict_keys_table():
    path = require_shared(f"{REFERENCE}/pcan_state_dict_keys.tsv")
    state = official_rule_state_dict(read_key_table(path))
    lines = path.read_text().splitlines()[1:]
    assert len(state) == len(lines) == 397
    for line in lines:
        fields = line.split("\t")
        assert _sha16(state[fields[0]]) == fields[-1], fields[0]
