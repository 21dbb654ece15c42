"""streamvis.engine: training and prediction loops.

- ``train.py``: `train(cfg)` and the explicit loop `run_training` (AMP, DDP, exact resume).
- ``hooks.py``: checkpointing, metrics.jsonl, loss-curve PNG, periodic evaluation, progress bar.
- ``solver.py``: SGD parameter groups and the official WarmupMultiStepLR.
- ``checkpoint.py``: checkpoint files (weights_only-safe) and RNG state capture/restore.
- ``distributed.py``: torchrun process groups (gloo on CPU, nccl on GPU) and collectives.
- ``builders.py``: the default loader / evaluator / init weights that `train` builds from a config.
- ``predict.py``: streaming prediction over videos and datasets.

Sub-modules are imported explicitly (``from streamvis.engine.train import train``).
"""
