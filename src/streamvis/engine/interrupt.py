"""Stopping a training run cleanly: SIGINT/SIGTERM become a request to stop after the current
iteration (`StopRequest`, agreed by every rank), a checkpoint of that iteration is saved and
`TrainingInterrupted` carries the exact command that resumes (`stop_with_checkpoint`)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from streamvis.engine import distributed as du
from streamvis.engine.checkpoint import periodic_name
from streamvis.engine.hooks import CheckpointHook, HookBase, TrainContext
from streamvis.engine.run_folder import resume_command
from streamvis.errors import StreamvisError


class TrainingInterrupted(StreamvisError):
    """SIGINT/SIGTERM stopped training after a checkpoint of the current iteration was saved.

    Attributes:
        signal_number: the signal received (`signal.SIGINT` or `signal.SIGTERM`).
        checkpoint: the checkpoint saved (None when none could be written).
        command: the command that resumes the run exactly.
    """

    def __init__(self, message: str, *, signal_number: int, checkpoint: Path | None, command: str):
        super().__init__(message)
        self.signal_number = signal_number
        self.checkpoint = checkpoint
        self.command = command

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process stopped by it (130, 143)."""
        return 128 + int(self.signal_number)


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a request to stop after the current iteration.

    A second signal raises KeyboardInterrupt at once (the user insists). Handlers are installed
    only in the main thread (Python delivers signals there) and restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_number: int = 0
        self._previous: dict[int, object] = {}

    def installed(self):
        from contextlib import contextmanager

        @contextmanager
        def scope():
            if threading.current_thread() is threading.main_thread():
                for signum in self.SIGNALS:
                    self._previous[signum] = signal.signal(signum, self._handle)
            try:
                yield self
            finally:
                for signum, handler in self._previous.items():
                    signal.signal(signum, handler)
                self._previous.clear()

        return scope()

    def _handle(self, signum, frame) -> None:
        if self.signal_number:
            raise KeyboardInterrupt
        self.signal_number = signum
        import sys

        print(f"\n[streamvis train] {signal.Signals(signum).name} received: finishing this iteration and "
              "saving a checkpoint (send it again to quit without saving)", file=sys.stderr, flush=True)

    def agreed(self) -> bool:
        """True on every rank when any rank received a signal (one tiny all_reduce when distributed)."""
        if not du.is_dist():
            return bool(self.signal_number)
        flag = torch.tensor([float(self.signal_number)])
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        self.signal_number = int(flag.item())
        return bool(self.signal_number)


def stop_with_checkpoint(ctx: TrainContext, hooks: Sequence[HookBase], signal_number: int) -> None:
    """Save a checkpoint of the completed iteration `ctx.iteration`, then raise `TrainingInterrupted`."""
    saver = next((h for h in hooks if isinstance(h, CheckpointHook)), None)
    path = None
    if saver is not None:
        path = saver.checkpointer.output_dir / periodic_name(ctx.iteration)
        if saver.last_saved_iteration != ctx.iteration:
            saver.save_now(ctx, periodic_name(ctx.iteration))
    command = resume_command(ctx.output_dir, world_size=ctx.dist.world_size)
    name = signal.Signals(signal_number).name
    saved = f"saved {path} (iteration {ctx.iteration} of {ctx.max_iter})" if path else "no checkpoint hook"
    raise TrainingInterrupted(f"{name}: stopped after iteration {ctx.iteration}; {saved}. Resume exactly "
                              f"where it stopped with: {command}",
                              signal_number=signal_number, checkpoint=path, command=command)
