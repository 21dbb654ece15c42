"""Fixtures of the two-stage core tests (see pcan_golden.py)."""

from tests.models.two_stage.pcan_golden import golden_e2e, pcan_rule_state  # noqa: F401
