"""torchrun support shared by the jobs: rank/world from the environment, one gloo/NCCL process group per
process (created on first use, destroyed cleanly at exit: gloo aborts a process that leaves it open)."""
from __future__ import annotations

import atexit
import os


def rank_and_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def row_slice(n: int) -> tuple[int, int, int]:
    """(lo, hi, per): this process's share of n rows, `per` rows per process (the last one may have fewer)."""
    rank, world = rank_and_world()
    per = -(-n // world)
    return min(rank * per, n), min((rank + 1) * per, n), per


def gather_rows(local, n: int, per: int):
    """The row slices (numpy) of every process, concatenated in rank order (a no-op for one process)."""
    if rank_and_world()[1] == 1:
        return local
    import torch

    dist = ensure_process_group()
    padded = torch.zeros((per, *local.shape[1:]), dtype=torch.from_numpy(local).dtype)
    padded[: len(local)] = torch.from_numpy(local)
    parts = [torch.empty_like(padded) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, padded)
    return torch.cat(parts).numpy()[:n]


def gather_varying(local):
    """Every process's numpy rows, of any count, concatenated in rank order on every process (a no-op for one)."""
    import numpy as np

    if rank_and_world()[1] == 1:
        return local
    import torch

    dist = ensure_process_group()
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([len(local)]))
    sizes = [int(t) for t in sizes]
    tensor = torch.from_numpy(np.ascontiguousarray(local))
    padded = torch.zeros((max(sizes), *tensor.shape[1:]), dtype=tensor.dtype)
    padded[: len(local)] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)]).numpy()


def gather_objects(local) -> list:
    """Every process's picklable value, in rank order ([local] for one process). Only for values this job made
    (paths): never for anything read from an upload or a checkpoint."""
    if rank_and_world()[1] == 1:
        return [local]
    dist = ensure_process_group()
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, local)
    return out


def sum_over_processes(value):
    """A number (or numpy array) summed over the processes (a no-op for one)."""
    return _reduce_over_processes(value, "SUM")


def max_over_processes(value):
    """A number (or numpy array) maximised over the processes (a no-op for one)."""
    return _reduce_over_processes(value, "MAX")


def _reduce_over_processes(value, op: str):
    if rank_and_world()[1] == 1:
        return value
    import numpy as np
    import torch

    tensor = torch.from_numpy(np.atleast_1d(np.asarray(value)).copy())
    dist = ensure_process_group()
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    out = tensor.numpy()
    return out.item() if np.ndim(value) == 0 else out


def barrier() -> None:
    """Waits for every process (a no-op for one)."""
    if rank_and_world()[1] > 1:
        ensure_process_group().barrier()


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
