# Generated from chapters/02_text_to_tensors.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/02_text_to_tensors.ipynb cell 21
"""Text to tensors: sliding-window (input, target) batches for next-token prediction,
and the fixed sinusoidal positions of "Attention is all you need"."""

from __future__ import annotations

__all__ = [
    "check_window_fits", "GPTDataset", "create_dataloader", "sinusoidal_positions",
]

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.validation import check_bool, check_int


def _as_token_ids(token_ids) -> torch.Tensor:
    """token_ids (ints in a sequence, an array or a 1-D tensor) as one int64 tensor.

    TypeError for anything that is not integers; ValueError for a wrong shape or a
    negative id.
    """
    kind = type(token_ids).__name__
    array_like = hasattr(token_ids, "__array__")  # a numpy array, for example
    if isinstance(token_ids, (str, bytes)) or not (
        isinstance(token_ids, (Sequence, torch.Tensor)) or array_like
    ):
        raise TypeError(
            f"token_ids must be a sequence of ints or a 1-D integer tensor, got {kind}"
        )
    empty = torch.zeros(0, dtype=torch.long)  # as_tensor([]) would give float32
    try:
        ids = torch.as_tensor(token_ids) if len(token_ids) else empty
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise TypeError(
            f"token_ids must hold ints; cannot read the {kind}: {err}"
        ) from None
    if ids.dtype == torch.bool or ids.dtype.is_floating_point or ids.dtype.is_complex:
        raise TypeError(f"token_ids must be integers, got dtype {ids.dtype}")
    if ids.ndim != 1:
        shape = tuple(ids.shape)
        raise ValueError(
            f"token_ids must be 1-D (one stream of tokens), got shape {shape}"
        )
    if len(ids) and ids.min() < 0:
        raise ValueError(f"token ids must be >= 0, got {ids.min().item()}")
    return ids.long()


def check_window_fits(what: str, n_tokens: int, context_length: int) -> None:
    """ValueError unless `n_tokens` tokens hold one window: context_length inputs and
    one more token, the last target. `what` names the tokens in the message."""
    need = context_length + 1
    if n_tokens < need:
        raise ValueError(
            f"{what} has {n_tokens:,} tokens, too short for one window of "
            f"context_length {context_length}, which needs {need:,} tokens "
            f"({context_length:,} inputs and one more for the last target); "
            "use a longer text or a smaller context_length"
        )


# %% chapters/02_text_to_tensors.ipynb cell 23
class GPTDataset(Dataset):
    """Next-token-prediction windows over one long stream of token ids.

    Item i is (inputs, targets): with s = i * stride,
    inputs = token_ids[s : s + context_length], and targets the same window shifted one
    token to the right. The ids are stored once, as one flat int64 tensor; the windows
    are a strided view of it (`Tensor.unfold`), so memory stays at N ids whatever the
    stride.
    """

    def __init__(
        self, token_ids: Sequence[int] | torch.Tensor, context_length: int, stride: int
    ):
        self.context_length = check_int("context_length", context_length, minimum=1)
        self.stride = check_int("stride", stride, minimum=1)
        self.token_ids = _as_token_ids(token_ids)  # (N,)
        check_window_fits("token_ids", len(self.token_ids), self.context_length)
        # Row i = token_ids[i*stride : i*stride + context_length + 1], a view: no copy.
        size = self.context_length + 1
        self.windows = self.token_ids.unfold(0, size, self.stride)  # (n_windows, T+1)

    def __len__(self) -> int:
        return self.windows.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.windows[i]  # (T+1,)
        return window[:-1], window[1:]  # inputs (T,), targets (T,)


# %% chapters/02_text_to_tensors.ipynb cell 31
def create_dataloader(
    data: str | Sequence[int] | torch.Tensor,
    batch_size: int = 4,
    context_length: int = 256,
    stride: int | None = None,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    seed: int | None = None,
) -> DataLoader:
    """Batches of (inputs, targets), each (batch_size, context_length).

    data: text (encoded with GPT-2's tokenizer, `<|endoftext|>` allowed) or token ids
    (a sequence of ints or a 1-D integer tensor). stride defaults to context_length:
    windows do not overlap. With a seed, the shuffle uses its own torch.Generator, so
    the batch order is reproducible.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    context_length = check_int("context_length", context_length, minimum=1)
    if stride is None:
        stride = context_length
    shuffle = check_bool("shuffle", shuffle)
    drop_last = check_bool("drop_last", drop_last)
    num_workers = check_int("num_workers", num_workers, minimum=0)
    seed = check_int("seed", seed, none_ok=True)
    if isinstance(data, str):
        data = gpt2_encoding().encode(data, allowed_special={"<|endoftext|>"})
        check_window_fits("text", len(data), context_length)
    dataset = GPTDataset(data, context_length, stride)
    if drop_last and len(dataset) < batch_size:
        raise ValueError(
            f"only {len(dataset)} window(s) of context_length={context_length} with "
            f"stride={stride} fit in {len(dataset.token_ids)} tokens, fewer than "
            f"batch_size={batch_size}: with drop_last=True the loader would yield no "
            "batch; lower batch_size or context_length, or pass drop_last=False"
        )
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=generator,
    )


# %% chapters/02_text_to_tensors.ipynb cell 59
def sinusoidal_positions(T: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed positional encoding of "Attention is all you need" (section 3.5).

    Shape (T, d_model): PE[pos, 2i] = sin(pos / base^(2i/d_model)) and
    PE[pos, 2i+1] = cos(pos / base^(2i/d_model)).
    """
    T = check_int("T", T, minimum=1)
    d_model = check_int("d_model", d_model, minimum=2)
    if d_model % 2:
        raise ValueError(f"d_model must be even (sine-cosine pairs), got {d_model}")
    pos = torch.arange(T, dtype=torch.float64)  # (T,)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d_model/2,)
    inv_freq = base ** (-two_i / d_model)  # (d_model/2,)
    angles = torch.outer(pos, inv_freq)  # (T, d_model/2)
    pe = torch.empty(T, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe.float()  # (T, d_model)
