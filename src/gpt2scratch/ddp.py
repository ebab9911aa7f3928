# Generated from chapters/11_scaling.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/11_scaling.ipynb cell 5
"""Many processes with PyTorch's DDP: each trains a replica on its share of every global
batch, and the gradients are averaged by an all-reduce (section 11.5 of chapter 11).

Generated from chapter 11 of the book. It plugs into `trainer.train_run()` through the
`wrap=` seam (GPT2 -> FastGPT2 -> torch.compile -> DistributedDataParallel) and a sampler
that gives
each process its rows of the same global batches; `gpt2scratch.scale` is the fast path
each process runs.
"""

from __future__ import annotations

__all__ = [
    "DistInfo", "init_distributed", "ShardedSampler", "shard_loader",
    "check_batch_split", "make_wrap", "train_distributed",
]

import atexit
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, RandomSampler, Sampler

from gpt2scratch.model import GPT2
from gpt2scratch.scale import FastGPT2, FastPath, make_backward, set_adamw_kernel
from gpt2scratch.runtime import pick_device
from gpt2scratch.train import History
from gpt2scratch.trainer import epoch_seed, train_run
from gpt2scratch.validation import check_int


# %% chapters/11_scaling.ipynb cell 55
@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: rank r of world_size, on `device`."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # rank within this machine: which GPU to use
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs and writes checkpoints."""
        return self.rank == 0


def init_distributed(device=None) -> DistInfo:
    """Join the process group that `torchrun` describes in the environment (RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): NCCL between GPUs, gloo between
    CPU processes. Without torchrun: a world of one, no process group.
    """
    device = pick_device(device)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo(device=device)
    env = {k: int(os.environ.get(k, 0)) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    rank, world, local = env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]
    if device.type == "cuda":
        device = torch.device("cuda", local)  # one GPU per process
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world)
        atexit.register(_leave_group)
    return DistInfo(rank, world, local, device)


def _leave_group() -> None:
    """At exit: leave the process group cleanly, unless the program already did."""
    if dist.is_initialized():
        dist.destroy_process_group()


# %% chapters/11_scaling.ipynb cell 57
class ShardedSampler(Sampler[int]):
    """This process's rows of every global batch.

    An epoch is a permutation of the n windows that depends on (seed, epoch) only, the
    same in every process, cut into global batches of `global_batch` rows; rank r takes
    rows [r·g, (r+1)·g) of each, g = global_batch / world_size. The epoch has
    n // global_batch steps whatever the world size, so a checkpoint resumes on any
    number of processes, and the processes together see what one process would.
    """

    def __init__(self, n: int, global_batch: int, rank=0, world_size=1, seed=123):
        check_int("n", n, minimum=0)
        check_int("world_size", world_size, minimum=1)
        check_int("rank", rank, minimum=0)
        if rank >= world_size:
            raise ValueError(f"rank must be < world_size {world_size}, got {rank}")
        check_int("global_batch", global_batch, minimum=1)
        if global_batch % world_size:
            raise ValueError(
                f"the batch size {global_batch} does not split evenly over "
                f"{world_size} processes; use a multiple of {world_size}"
            )
        self.n, self.global_batch, self.seed = n, global_batch, check_int("seed", seed)
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.per_rank = global_batch // world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # chapter 5's epoch_batches calls this

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=generator)  # the same in every process
        for b in range(self.n // self.global_batch):
            start = b * self.global_batch + self.rank * self.per_rank
            yield from order[start : start + self.per_rank].tolist()

    def __len__(self) -> int:
        return self.n // self.global_batch * self.per_rank


def shard_loader(loader: DataLoader, info: DistInfo, seed: int) -> DataLoader:
    """`loader` (batches of B rows, shuffled) as this process's share: B / world rows
    of each of the same global batches."""
    B = loader.batch_size
    sampler = ShardedSampler(len(loader.dataset), B, info.rank, info.world_size, seed)
    return DataLoader(
        loader.dataset,
        batch_size=sampler.per_rank,
        sampler=sampler,
        collate_fn=loader.collate_fn,
        generator=torch.Generator(),  # keep the global RNG out of the loader's seed
    )


# %% chapters/11_scaling.ipynb cell 59
def check_batch_split(
    batch_size: int, world_size: int = 1, accum_steps: int = 1
) -> int:
    """The micro-batch: `batch_size` rows per optimizer step split over `world_size`
    processes and `accum_steps` micro-batches each; ValueError unless they divide."""
    for name, value in (("batch_size", batch_size), ("world_size", world_size)):
        check_int(name, value, minimum=1)
    check_int("accum_steps", accum_steps, minimum=1)
    if batch_size % (world_size * accum_steps):
        raise ValueError(
            f"batch_size {batch_size} does not split into {world_size} process(es) x "
            f"{accum_steps} micro-batch(es); use a multiple of {world_size * accum_steps}"
        )
    return batch_size // (world_size * accum_steps)


# %% chapters/11_scaling.ipynb cell 62
def make_wrap(fast: FastPath, info: DistInfo) -> Callable[[GPT2], nn.Module]:
    """The `wrap=` seam of `train_run()`: GPT2 -> FastGPT2 (padded head, loss inside)
    -> torch.compile -> DistributedDataParallel, each where `fast` and `info` ask."""

    def wrap(model: GPT2) -> nn.Module:
        runner = FastGPT2(model, pad_vocab=fast.pad_vocab)
        if fast.compile:
            runner = torch.compile(runner)
        if info.world_size > 1:
            on_gpu = info.device.type == "cuda"
            ids = [info.device.index] if on_gpu else None
            runner = DistributedDataParallel(runner, device_ids=ids)
        return runner

    return wrap


def train_distributed(
    model,
    train_loader,
    val_loader,
    optimizer,
    settings,
    *,
    info: DistInfo,
    fast: FastPath | None = None,
    checkpoint_dir=None,
    **kwargs,
) -> History:
    """`train_run()` (Appendix A) on this process's share of the data, through the fast
    path: only rank 0 logs and writes checkpoints; all resume from `resume_from`.
    """
    fast = fast or FastPath.auto(info.device)
    set_adamw_kernel(optimizer, fast.fused_adamw)
    if info.world_size > 1 or (dist.is_available() and dist.is_initialized()):
        if not isinstance(getattr(train_loader, "sampler", None), RandomSampler):
            raise ValueError(
                "DDP shards chapter 5's shuffled DataLoader; got a loader "
                f"with {type(getattr(train_loader, 'sampler', None)).__name__}"
            )
        train_loader = shard_loader(train_loader, info, settings.seed)
    if not info.is_main:
        quiet = dict(verbose=False, progress=False, sample_prompt=None)
        settings, checkpoint_dir = replace(settings, **quiet), None
    history = train_run(
        model,
        train_loader,
        val_loader,
        optimizer,
        settings,
        device=info.device,
        checkpoint_dir=checkpoint_dir,
        wrap=make_wrap(fast, info),
        backward=make_backward(fast, info.device),
        **kwargs,
    )
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank 0 may still be writing its last checkpoint
    return history
