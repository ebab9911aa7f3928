"""DDP on two CPU processes (gloo) against one process with the same global batch.

The two-process run trains Appendix A's `train_run()` through `ddp.train_distributed`
(DistributedDataParallel, each rank on its half of every global batch, dropout 0). Its
loss sequence must equal a one-process run's within TOL: the gradients agree up to the
order in which float32 sums are taken (each rank averages its half, then the
all-reduce adds the two halves; one process sums all rows at once), about 1e-7
relative, and a few optimizer steps amplify that only slightly. A resume of the
two-process checkpoint in one process (a change of world size) must continue the same
run. Kept small so that the test runs in well under a minute on two cores.
"""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from gpt2scratch.dataset import create_dataloader
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.ddp import DistInfo, init_distributed, shard_loader, train_distributed
from gpt2scratch.scale import FastPath
from gpt2scratch.run import TrainSettings

TOL = 1e-5  # absolute, on losses near 10.8 (ln 50257): float32 sums in another order
CONFIG = GPT2Config.preset("tiny", context_length=16, dropout=0.0)
SETTINGS = TrainSettings(
    model="tiny", context_length=16, batch_size=8, dropout=0.0, lr=3e-3, epochs=2,
    eval_iters=1, seed=7, progress=False, verbose=False,
)


def _loaders():
    g = torch.Generator().manual_seed(0)
    train_ids = torch.randint(0, CONFIG.vocab_size, (16 * 32 + 1,), generator=g)
    val_ids = torch.randint(0, CONFIG.vocab_size, (16 * 8 + 1,), generator=g)
    train = create_dataloader(train_ids, batch_size=8, context_length=16, seed=7)
    val = create_dataloader(val_ids, batch_size=8, context_length=16, shuffle=False)
    return train, val


def _run(info: DistInfo, epochs: int, checkpoint_dir=None, resume_from=None):
    torch.manual_seed(SETTINGS.seed)
    model = GPT2(CONFIG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=SETTINGS.lr, weight_decay=0.1)
    train, val = _loaders()
    if info.world_size == 1:  # as under `torchrun --nproc_per_node 1`: the same batches
        train = shard_loader(train, info, SETTINGS.seed)
    fast = FastPath.auto("cpu")
    history = train_distributed(
        model, train, val, optimizer, SETTINGS, info=info, fast=fast, epochs=epochs,
        checkpoint_dir=checkpoint_dir, resume_from=resume_from,
    )
    return history.step_loss


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main) == (rank, world, rank == 0)
    losses = _run(info, epochs=1, checkpoint_dir=os.path.join(folder, "ckpt"))
    torch.save(torch.tensor(losses), os.path.join(folder, f"losses{rank}.pt"))
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="no gloo backend")
def test_two_processes_equal_one_process_and_resume_on_one(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    two = [torch.load(tmp_path / f"losses{r}.pt") for r in (0, 1)]
    assert torch.equal(two[0], two[1])  # every rank logs the all-reduced mean loss
    torch.set_num_threads(1)
    one = torch.tensor(_run(DistInfo(), epochs=2))  # one process, the same global batches
    steps = len(two[0])
    assert steps == 4 and len(one) == 2 * steps
    assert (two[0] - one[:steps]).abs().max().item() < TOL
    assert not (one[1:] == one[:-1]).all()  # it trains: the losses move
    # Only rank 0 wrote a checkpoint; resume it in ONE process for the second epoch.
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.is_dir()) == [
        f"step-{steps:08d}"
    ]
    resumed = torch.tensor(_run(DistInfo(), epochs=2, resume_from=tmp_path / "ckpt"))
    assert (resumed - one).abs().max().item() < TOL
