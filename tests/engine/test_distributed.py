"""DDP on CPU: two gloo processes train the toy model; both end with the same weights, equal to
one process training on the union of their batches."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from streamvis.config import ConfigError
from streamvis.engine.checkpoint import load_checkpoint
from streamvis.engine.distributed import env_dist_info, reduce_mean
from streamvis.engine.train import per_rank_batch_size

HERE = Path(__file__).resolve().parent

WORKER = textwrap.dedent(
    """
    import dataclasses, importlib.util, sys, torch
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("toy", sys.argv[1])
    toy = sys.modules["toy"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(toy)
    from streamvis.engine.hooks import HookBase
    from pathlib import Path
    out = Path(sys.argv[2])

    class SaveRankWeights(HookBase):
        def after_train(self, ctx):
            torch.save(ctx.model.state_dict(), out / f"rank{ctx.dist.rank}.pt")

    cfg = toy.toy_config(out, max_iter=3, steps=(100,))
    cfg = dataclasses.replace(cfg, model=toy.ToyModelConfig(dropout=0.0))
    toy.run_toy(cfg, extra_hooks=[SaveRankWeights()])
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two torchrun-style processes (gloo): ~10 s
def test_two_cpu_processes_train_in_sync(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(script), str(HERE / "test_train.py"), str(tmp_path / "ddp")]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    rank0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    final = load_checkpoint(tmp_path / "ddp" / "model_final.pth")
    assert final["world_size"] == 2 and len(final["rng"]) == 2

    # one process on the whole batch of 4 (the toy loader splits samples by global index)
    toy = _load_toy()
    cfg = toy.toy_config(tmp_path / "single", max_iter=3, steps=(100,))
    toy.run_toy(dataclasses.replace(cfg, model=toy.ToyModelConfig(dropout=0.0)))
    single = load_checkpoint(tmp_path / "single" / "model_final.pth")["model"]
    for key, value in single.items():
        torch.testing.assert_close(rank0[key], value, rtol=1e-5, atol=1e-6)
    assert not torch.equal(single["head.weight"], toy.ToyModel(toy.ToyModelConfig()).head.weight)


def _load_toy():
    spec = importlib.util.spec_from_file_location("engine_toy", HERE / "test_train.py")
    module = sys.modules["engine_toy"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_batch_must_split_over_processes():
    assert per_rank_batch_size(16, 4) == 4
    with pytest.raises(ConfigError, match="ims_per_batch=6 is not divisible by the 4 processes"):
        per_rank_batch_size(6, 4)


def test_single_process_defaults(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = env_dist_info()
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    values = reduce_mean({"loss_a": torch.tensor(1.5), "total_loss": torch.tensor([2.0])})
    assert values == {"loss_a": 1.5, "total_loss": 2.0}
