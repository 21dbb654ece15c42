"""The PCAN weight rule reproduces every checksum of pcan_state_dict_keys.tsv."""

from __future__ import annotations

import hashlib

from tests.models.two_stage.pcan_golden import load_rule_state_dict


def test_rule_state_dict_matches_tsv_checksums():
    state, digests = load_rule_state_dict()
    assert len(state) == 397
    bad = [name for name, value in state.items()
           if hashlib.sha256(value.numpy().tobytes()).hexdigest()[:16] != digests[name]]
    assert bad == []
