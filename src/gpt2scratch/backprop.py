# Generated from chapters/06_backprop.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/06_backprop.ipynb cell 2
"""Backpropagation by hand for GPT-2: each op's forward and backward, the whole model's
gradients without autograd, and AdamW.

Generated from chapter 06 of the book. `model_gradients()` returns what autograd would;
`manual_backward()` plugs it into `gpt2scratch.train.train(backward=...)`.
"""

from __future__ import annotations

__all__ = [
    "GELU_S", "GELU_A", "gelu_backward", "cross_entropy_backward_",
    "layer_norm_forward", "layer_norm_recompute", "layer_norm_backward",
    "linear_backward", "embedding_backward", "dropout_mask", "dropout_",
    "attention_forward", "attention_backward", "block_forward", "block_backward",
    "model_forward", "model_backward", "loss_and_gradients", "model_gradients",
    "manual_backward", "AdamW",
]

import math

import torch
import torch.nn.functional as F

from gpt2scratch.attention import merge_heads, split_heads
from gpt2scratch.model import check_token_ids


# %% chapters/06_backprop.ipynb cell 9
GELU_S, GELU_A = math.sqrt(2 / math.pi), 0.044715


def gelu_backward(dy, x):
    """dL/dx of y = 0.5x(1 + tanh u), u = √(2/π)(x + 0.044715x³), from the input x:

    dy/dx = 0.5(1 + tanh u) + 0.5x(1 - tanh²u)·√(2/π)(1 + 3·0.044715x²).
    """
    x2 = x * x
    t = x2.mul(GELU_A).add_(1).mul_(x).mul_(GELU_S).tanh_()  # tanh u
    du = x2.mul_(3 * GELU_A * GELU_S).add_(GELU_S).mul_(x)  # x du/dx
    du.mul_(torch.addcmul(torch.ones_like(t), t, t, value=-1))  # x(1 - t²) du/dx
    return du.add_(t).add_(1).mul_(dy).mul_(0.5)


# %% chapters/06_backprop.ipynb cell 18
def cross_entropy_backward_(logits, targets):
    """Mean cross-entropy of (N, V) logits; then, in place, logits <- N·dL/dlogits =
    softmax(z) - onehot(target). The caller folds the 1/N into its matmuls.

    One (N, V) buffer: log-softmax overwrites the logits, exp turns it into the softmax.
    """
    N = logits.shape[0]
    torch.ops.aten._log_softmax.out(logits, -1, False, out=logits)  # in place
    rows = torch.arange(N, device=logits.device)
    loss = -logits[rows, targets].sum() / N  # -mean log softmax(z)[target]
    logits.exp_()  # softmax(z)
    logits[rows, targets] -= 1  # minus the one-hot
    return loss


# %% chapters/06_backprop.ipynb cell 23
def layer_norm_forward(x, w, b, eps: float = 1e-5):
    """LayerNorm over the last dim; keeps x and two numbers per row (mean, 1/std)."""
    y, mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), w, b, eps)
    return y, (x, mean, rstd)


def layer_norm_recompute(cache, w, b):
    """x̂ = (x - mean) / std and the output x̂ w + b, recomputed from the cache."""
    x, mean, rstd = cache
    xhat = (x - mean).mul_(rstd)
    return xhat, torch.addcmul(b, xhat, w)


def layer_norm_backward(dy, xhat, rstd, w):
    """From dL/dy and x̂: dx = (g - mean(g) - x̂ mean(g x̂)) / std with g = dy w; dw; db.

    Overwrites x̂ (a recomputed buffer).
    """
    C = dy.shape[-1]
    g = dy * w  # dL/dx̂
    proj = (g * xhat).mean(-1, keepdim=True)
    dw = (dy * xhat).reshape(-1, C).sum(0)
    db = dy.reshape(-1, C).sum(0)
    dx = g.sub_(g.mean(-1, keepdim=True)).sub_(xhat.mul_(proj)).mul_(rstd)
    return dx, dw, db


# %% chapters/06_backprop.ipynb cell 26
def linear_backward(dy, x, w, bias: bool = True, scale: float = 1.0):
    """y = x wᵀ + b. From dL/dy (..., out) and the input x (..., in): dx, dw, db.

    `scale` multiplies all three inside the matmuls (addmm's alpha), at no cost.
    """
    dy2, x2 = dy.reshape(-1, dy.shape[-1]), x.reshape(-1, x.shape[-1])
    zero = dy.new_zeros(())
    dx = torch.addmm(zero, dy2, w, beta=0, alpha=scale)  # dy w: (N, in)
    dw = torch.addmm(zero, dy2.t(), x2, beta=0, alpha=scale)  # dyᵀ x: (out, in)
    db = dy2.sum(0).mul_(scale) if bias else None  # (out,)
    return dx.view(*dy.shape[:-1], -1), dw, db


def embedding_backward(dout, idx, num_embeddings: int, into=None):
    """out = weight[idx]: each row of dout is added to its token's row (a scatter-add),
    into a zero (V, C) matrix or into `into`."""
    C = dout.shape[-1]
    if into is None:
        into = dout.new_zeros(num_embeddings, C)
    return into.index_add_(0, idx.reshape(-1), dout.reshape(-1, C))  # (V, C)


# %% chapters/06_backprop.ipynb cell 28
def dropout_mask(shape, p: float, like, generator=None):
    """Which entries dropout zeroes: a bool tensor, True with probability p, or None if
    p == 0. One byte per entry; the same generator state gives the same mask."""
    if p == 0:
        return None
    drop = torch.empty(shape, dtype=torch.bool, device=like.device)
    return drop.bernoulli_(p, generator=generator)


def dropout_(x, drop, p: float):
    """Inverted dropout, in place: zero the dropped entries, scale the rest by 1/(1-p).
    Its backward is the same function applied to dL/dy."""
    if drop is None:
        return x
    return x.masked_fill_(drop, 0).mul_(1 / (1 - p))


# %% chapters/06_backprop.ipynb cell 34
def attention_forward(qkv, n_heads: int, p: float = 0.0, generator=None):
    """Causal attention on the fused (B, T, 3C) q/k/v: the output (B, H, T, hd) and what
    backward needs, (qkv, the (B, H, T, T) weights P, the dropout mask); not the scores."""
    C = qkv.shape[-1] // 3
    q, k, v = (split_heads(t, n_heads) for t in qkv.split(C, dim=2))  # (B, H, T, hd)
    T, scale = q.shape[2], 1 / math.sqrt(C // n_heads)
    future = torch.ones(T, T, dtype=torch.bool, device=qkv.device).triu_(1)
    scores = (q * scale) @ k.transpose(-2, -1)  # (B, H, T, T)
    att = torch.softmax(scores.masked_fill_(future, float("-inf")), dim=-1)
    del scores
    drop = dropout_mask(att.shape, p, att, generator)
    y = (att if drop is None else dropout_(att.clone(), drop, p)) @ v
    return y, (qkv, att, drop)


def attention_backward(dy, y, cache, n_heads: int, p: float = 0.0):
    """From dL/dy and the output y, both (B, H, T, hd): dL/dqkv (B, T, 3C).

    dS = P ⊙ (dP - D) with D_i = Σ_j dP_ij P_ij = dy_i · y_i (FlashAttention's trick).
    """
    qkv, att, drop = cache
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (split_heads(t, n_heads) for t in qkv.split(C, dim=2))
    scale = 1 / math.sqrt(C // n_heads)
    dqkv = qkv.new_empty(B, T, 3, n_heads, C // n_heads)  # [dq | dk | dv], heads merged
    att_drop = att if drop is None else dropout_(att.clone(), drop, p)
    dqkv[:, :, 2] = (att_drop.transpose(-2, -1) @ dy).transpose(1, 2)  # dv = P_dᵀ dy
    del att_drop
    D = (dy * y).sum(-1, keepdim=True)  # (B, H, T, 1)
    ds = dropout_(dy @ v.transpose(-2, -1), drop, p)  # dP: (B, H, T, T)
    ds.sub_(D).mul_(att)  # dS = P ⊙ (dP - D); masked entries have P = 0
    dqkv[:, :, 0] = (ds @ k).mul_(scale).transpose(1, 2)  # dq
    dqkv[:, :, 1] = (ds.transpose(-2, -1) @ q).mul_(scale).transpose(1, 2)  # dk
    return dqkv.view(B, T, C3)


# %% chapters/06_backprop.ipynb cell 41
def block_forward(block, x, p: float = 0.0, generator=None):
    """One pre-LN block, x + attn(ln_1(x)), then + mlp(ln_2(x)): (x, cache)."""
    attn, mlp, H = block.attn, block.mlp, block.attn.n_heads
    a, ln1 = layer_norm_forward(x, block.ln_1.weight, block.ln_1.bias)
    qkv = F.linear(a, attn.c_attn.weight, attn.c_attn.bias)  # (B, T, 3C)
    del a  # recomputed in the backward
    y, att = attention_forward(qkv, H, p, generator)
    y = merge_heads(y)  # (B, T, C)
    o = F.linear(y, attn.c_proj.weight, attn.c_proj.bias)
    drop1 = dropout_mask(o.shape, p, o, generator)
    x = dropout_(o, drop1, p).add_(x)  # the residual add, into o's buffer: x is kept
    a, ln2 = layer_norm_forward(x, block.ln_2.weight, block.ln_2.bias)
    h = F.linear(a, mlp.c_fc.weight, mlp.c_fc.bias)  # (B, T, 4C), before GELU
    del a
    o = F.linear(F.gelu(h, approximate="tanh"), mlp.c_proj.weight, mlp.c_proj.bias)
    drop2 = dropout_mask(o.shape, p, o, generator)
    x = dropout_(o, drop2, p).add_(x)
    return x, (ln1, att, y, drop1, ln2, h, drop2)


# %% chapters/06_backprop.ipynb cell 45
def block_backward(block, dx, cache, p: float = 0.0):
    """From dL/dx_out: dL/dx_in and {parameter name: gradient} for this block."""
    ln1, att, y, drop1, ln2, h, drop2 = cache
    attn, mlp, g = block.attn, block.mlp, {}
    # x_out = x_mid + drop(c_proj(gelu(c_fc(ln_2(x_mid))))): the residual passes dx on
    do = dropout_(dx.clone(), drop2, p)
    gelu_h = F.gelu(h, approximate="tanh")  # recomputed, not stored
    dgelu, g["mlp.c_proj.weight"], g["mlp.c_proj.bias"] = linear_backward(
        do, gelu_h, mlp.c_proj.weight
    )
    del gelu_h, do
    dh = gelu_backward(dgelu, h)
    del dgelu
    xhat, a = layer_norm_recompute(ln2, block.ln_2.weight, block.ln_2.bias)
    da, g["mlp.c_fc.weight"], g["mlp.c_fc.bias"] = linear_backward(
        dh, a, mlp.c_fc.weight
    )
    del dh, a
    dln, g["ln_2.weight"], g["ln_2.bias"] = layer_norm_backward(
        da, xhat, ln2[2], block.ln_2.weight
    )
    dx = dln.add_(dx)  # x_mid feeds the MLP branch and the residual: the two add up
    # x_mid = x_in + drop(c_proj(attention(c_attn(ln_1(x_in)))))
    do = dropout_(dx.clone(), drop1, p)
    dy, g["attn.c_proj.weight"], g["attn.c_proj.bias"] = linear_backward(
        do, y, attn.c_proj.weight
    )
    del do
    H = attn.n_heads
    dqkv = attention_backward(split_heads(dy, H), split_heads(y, H), att, H, p)
    del dy, att
    xhat, a = layer_norm_recompute(ln1, block.ln_1.weight, block.ln_1.bias)
    bias = attn.c_attn.bias is not None
    da, g["attn.c_attn.weight"], db = linear_backward(dqkv, a, attn.c_attn.weight, bias)
    if bias:
        g["attn.c_attn.bias"] = db
    del dqkv, a
    dln, g["ln_1.weight"], g["ln_1.bias"] = layer_norm_backward(
        da, xhat, ln1[2], block.ln_1.weight
    )
    return dln.add_(dx), g


# %% chapters/06_backprop.ipynb cell 49
def model_forward(model, idx, generator=None):
    """GPT-2's forward, op by op: (B*T, V) logits and the caches the backward needs."""
    config = model.config
    check_token_ids(idx, vocab_size=config.vocab_size, context_length=config.context_length)
    p = model.config.dropout if model.training else 0.0
    x = model.wte.weight[idx] + model.wpe.weight[: idx.shape[1]]  # (B, T, C)
    drop0 = dropout_mask(x.shape, p, x, generator)
    x = dropout_(x, drop0, p)
    caches = []
    for block in model.h:
        x, cache = block_forward(block, x, p, generator)
        caches.append(cache)
    h, lnf = layer_norm_forward(x, model.ln_f.weight, model.ln_f.bias)
    logits = F.linear(h.reshape(-1, h.shape[-1]), model.lm_head.weight)  # (B*T, V)
    return logits, (drop0, caches, lnf)


# %% chapters/06_backprop.ipynb cell 53
def model_backward(model, idx, dlogits, cache) -> dict[str, torch.Tensor]:
    """From N·dL/dlogits (N = B*T rows, V): {name: gradient} for every parameter."""
    drop0, caches, lnf = cache
    p = model.config.dropout if model.training else 0.0
    tied = model.lm_head.weight is model.wte.weight
    xhat, h = layer_norm_recompute(lnf, model.ln_f.weight, model.ln_f.bias)
    w, N = model.lm_head.weight, dlogits.shape[0]
    dh, dw_head, _ = linear_backward(dlogits, h, w, bias=False, scale=1 / N)
    del dlogits, h, cache  # not read again (the caller still holds the (N, V) buffer)
    grads = {}
    dx, grads["ln_f.weight"], grads["ln_f.bias"] = layer_norm_backward(
        dh.view(*idx.shape, -1), xhat, lnf[2], model.ln_f.weight
    )
    for i in reversed(range(len(model.h))):
        dx, g = block_backward(model.h[i], dx, caches.pop(), p)  # frees the cache
        grads.update({f"h.{i}.{name}": grad for name, grad in g.items()})
    dx = dropout_(dx, drop0, p)
    grads["wpe.weight"] = torch.zeros_like(model.wpe.weight)
    grads["wpe.weight"][: idx.shape[1]] = dx.sum(0)  # every row of the batch adds in
    V = model.wte.weight.shape[0]
    # tied: the embedding's scatter-add lands on lm_head's gradient, one (V, C) matrix
    grads["wte.weight"] = embedding_backward(dx, idx, V, dw_head if tied else None)
    if not tied:
        grads["lm_head.weight"] = dw_head
    return {name: grads[name] for name, _ in model.named_parameters()}


# %% chapters/06_backprop.ipynb cell 54
def loss_and_gradients(model, idx, targets, generator=None):
    """The mean cross-entropy (0-dim tensor) and {name: gradient}, without autograd."""
    check_token_ids(targets, vocab_size=model.config.vocab_size)
    if targets.shape != idx.shape:
        raise ValueError(
            f"targets must have the shape of idx {tuple(idx.shape)}, "
            f"got {tuple(targets.shape)}"
        )
    with torch.no_grad():
        logits, cache = model_forward(model, idx, generator)
        loss = cross_entropy_backward_(logits, targets.reshape(-1))  # logits -> N·dz
        return loss, model_backward(model, idx, logits, cache)


def model_gradients(model, idx, targets, generator=None) -> dict[str, torch.Tensor]:
    """d(mean cross-entropy)/d(parameter) for every name of `model.named_parameters()`,
    computed without autograd; the tied matrix appears once, as 'wte.weight'."""
    return loss_and_gradients(model, idx, targets, generator)[1]


def manual_backward(model, inputs, targets) -> torch.Tensor:
    """For `train(backward=manual_backward)`: fill every trainable parameter's `.grad`
    by hand and return the loss, as `gpt2scratch.train.autograd_backward` does."""
    loss, grads = loss_and_gradients(model, inputs, targets)
    for name, param in model.named_parameters():
        if param.requires_grad:
            param.grad = grads[name] if param.grad is None else param.grad + grads[name]
    return loss


# %% chapters/06_backprop.ipynb cell 62
class AdamW:
    """AdamW by hand, operation for operation as `torch.optim.AdamW` (non-fused) does it.

    `params` is an iterable of (name, tensor) or a dict; `step(grads)` takes
    {name: gradient} (as `model_gradients` returns) and updates the tensors in place.
    """

    def __init__(
        self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01
    ):
        self.params = dict(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.t = 0  # steps taken
        self.m = {n: torch.zeros_like(w) for n, w in self.params.items()}
        self.v = {n: torch.zeros_like(w) for n, w in self.params.items()}

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor]) -> None:
        (beta1, beta2), lr = self.betas, self.lr
        self.t += 1
        bias1, bias2 = 1 - beta1**self.t, 1 - beta2**self.t  # bias corrections
        for name, w in self.params.items():
            g, m, v = grads[name], self.m[name], self.v[name]
            w.mul_(1 - lr * self.weight_decay)  # decoupled weight decay
            m.lerp_(g, 1 - beta1)  # m = β1 m + (1 - β1) g
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v = β2 v + (1 - β2) g²
            denom = (v.sqrt() / math.sqrt(bias2)).add_(self.eps)  # √v̂ + ε
            w.addcdiv_(m, denom, value=-lr / bias1)  # w -= lr m̂ / (√v̂ + ε)
