# Generated from chapters/02_text_to_tensors.ipynb — edit the notebook, then `make export`. Do not edit by hand.

"""Text to tensors: sliding-window (input, target) batches for next-token prediction, and the fixed
sinusoidal positions of "Attention is all you need"."""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from gpt2scratch.tokenizer import gpt2_encoding


def _check_int(name: str, value, minimum: int | None = None) -> int:
    """value as an int, or TypeError/ValueError naming `name` and what would be valid."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _as_token_ids(token_ids) -> torch.Tensor:
    """token_ids (a sequence of ints, or a 1-D integer tensor / array) as a 1-D int64 tensor."""
    if isinstance(token_ids, (str, bytes)):
        raise TypeError(f"token_ids must be a sequence of ints or a 1-D integer tensor, got "
                        f"{type(token_ids).__name__}; create_dataloader accepts text and encodes it for you")
    if isinstance(token_ids, torch.Tensor):
        ids = token_ids
    elif isinstance(token_ids, Sequence) or hasattr(token_ids, "__array__"):  # list, tuple, range, numpy array
        try:
            ids = torch.as_tensor(token_ids) if len(token_ids) else torch.empty(0, dtype=torch.long)
        except (TypeError, ValueError, RuntimeError, OverflowError) as err:
            raise TypeError(f"token_ids must hold ints; could not read the {type(token_ids).__name__} "
                            f"as integers ({err})") from None
    else:
        raise TypeError(f"token_ids must be a sequence of ints or a 1-D integer tensor, "
                        f"got {type(token_ids).__name__}")
    if ids.dtype == torch.bool or ids.dtype.is_floating_point or ids.dtype.is_complex:
        raise TypeError(f"token_ids must be integers, got dtype {ids.dtype}")
    if ids.ndim != 1:
        raise ValueError(f"token_ids must be 1-D (one long stream of tokens), got shape {tuple(ids.shape)}")
    if len(ids) and ids.min() < 0:
        raise ValueError(f"token ids must be >= 0, got {ids.min().item()}")
    return ids.to(torch.long)


def _check_long_enough(what: str, n_tokens: int, context_length: int) -> None:
    # A window is context_length inputs plus one more token: the target of the last input.
    if n_tokens < context_length + 1:
        raise ValueError(f"{what} has {n_tokens} tokens; need at least context_length+1 = {context_length + 1}")


class GPTDataset(Dataset):
    """Next-token-prediction windows over one long stream of token ids.

    Item i is (inputs, targets): inputs = token_ids[i*stride : i*stride + context_length], and targets the
    same window shifted one token to the right. The ids are stored once, as one flat int64 tensor; the
    windows are a strided view of it (`Tensor.unfold`), so memory stays at N ids whatever the stride.
    """

    def __init__(self, token_ids: Sequence[int] | torch.Tensor, context_length: int, stride: int):
        self.context_length = _check_int("context_length", context_length, 1)
        self.stride = _check_int("stride", stride, 1)
        self.token_ids = _as_token_ids(token_ids)                        # (N,)
        _check_long_enough("token_ids", len(self.token_ids), self.context_length)
        # Row i = token_ids[i*stride : i*stride + context_length + 1]; a view, nothing is copied.
        self.windows = self.token_ids.unfold(0, self.context_length + 1, self.stride)  # (n_windows, T+1)

    def __len__(self) -> int:
        return self.windows.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.windows[i]                                          # (T+1,)
        return window[:-1], window[1:]                                    # inputs (T,), targets (T,)


def create_dataloader(data: str | Sequence[int] | torch.Tensor, batch_size: int = 4, context_length: int = 256,
                      stride: int | None = None, shuffle: bool = True, drop_last: bool = True,
                      num_workers: int = 0, seed: int | None = None) -> DataLoader:
    """Batches of (inputs, targets), each (batch_size, context_length), for next-token prediction.

    data: text (encoded with GPT-2's tokenizer, `<|endoftext|>` allowed) or token ids (a sequence of ints or
    a 1-D integer tensor). stride defaults to context_length (windows do not overlap). With a seed, the
    shuffle uses its own torch.Generator, so the batch order is reproducible.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    context_length = _check_int("context_length", context_length, 1)
    stride = context_length if stride is None else _check_int("stride", stride, 1)
    num_workers = _check_int("num_workers", num_workers, 0)
    if seed is not None:
        seed = _check_int("seed", seed)
    if isinstance(data, str):
        data = gpt2_encoding().encode(data, allowed_special={"<|endoftext|>"})
        _check_long_enough("text", len(data), context_length)
    dataset = GPTDataset(data, context_length, stride)
    if drop_last and len(dataset) < batch_size:
        raise ValueError(f"only {len(dataset)} window(s) of context_length={context_length} with stride={stride} "
                         f"fit in {len(dataset.token_ids)} tokens, fewer than batch_size={batch_size}: with "
                         "drop_last=True the loader would yield no batch; lower batch_size or context_length, "
                         "or pass drop_last=False")
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers, generator=generator)


def sinusoidal_positions(T: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed positional encoding of "Attention is all you need" (section 3.5), shape (T, d_model).

    PE[pos, 2i] = sin(pos / base^(2i/d_model)) and PE[pos, 2i+1] = cos(pos / base^(2i/d_model)).
    """
    T = _check_int("T", T, 1)
    d_model = _check_int("d_model", d_model, 2)
    if d_model % 2:
        raise ValueError(f"d_model must be even (sine-cosine pairs), got {d_model}")
    pos = torch.arange(T, dtype=torch.float64)                                      # (T,)
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d_model/2,)
    angles = torch.outer(pos, inv_freq)                                             # (T, d_model/2)
    pe = torch.empty(T, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe.float()                                                               # (T, d_model)
