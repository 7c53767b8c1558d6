"""torchrun support shared by the jobs: rank/world from the environment, one gloo/NCCL process group per
process (created on first use, destroyed cleanly at exit: gloo aborts a process that leaves it open)."""
from __future__ import annotations

import atexit
import os


def rank_and_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def ensure_process_group():
    """The default process group (gloo: collectives on CPU tensors work for every device)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
        atexit.register(_shutdown)
    return dist


def _shutdown():
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
