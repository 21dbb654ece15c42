"""CrossVIS (Yang et al., "Crossover Learning for Fast Online Video Instance Segmentation", ICCV 2021).

Read in this order; each file stands alone:

- ``config.py``: `CrossVISConfig` (architecture + inference) and `LossConfig` (training).
- ``model.py``: `CrossVIS` (``loss`` / ``predict``), `build_crossvis`, `optimize_for_inference`.
- ``fcos.py``: the FCOS head (cls / box / centerness / controller / re-ID), its typed outputs,
  FCOS inference (`detect`).
- ``condinst.py``: the CondInst mask branch and dynamic mask head.
- ``targets.py``: FCOS training targets and `FramePositives`.
- ``crossover.py``: crossover learning, the whole of it (``loss_cross_over``).
- ``embedding.py``: the re-ID (global balanced embedding) loss.
- ``criterion.py``: all training losses of a frame pair.
- ``convert.py``: official checkpoints -> our state dict and config.
- ``rule_weights.py``: deterministic weights for golden tests and benchmarks.

The association rule of the official tool is `streamvis.tracking.crossvis.CrossVISTracker`.
"""
