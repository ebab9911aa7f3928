"""The commands that use a model: `python -m gpt2scratch generate`, `eval`, `export` and
`attention` (hand-written, part of the CLI).

Each reads the model that --checkpoint or --init names and calls the chapter that does the work:
generation (08), evaluation (05), the Hugging Face folder (07), the attention dashboard (10).
Errors are not handled here: a check's ValueError reaches `__main__.main`.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def _load_model(args: argparse.Namespace, device):
    """The model --checkpoint or --init names, on `device`."""
    if getattr(args, "init", None) is not None:
        from gpt2scratch.pretrained import load_pretrained

        return load_pretrained(args.init, device=device)
    from gpt2scratch.checkpoint import load_checkpoint

    return load_checkpoint(args.checkpoint, device=device).model


def cmd_export(args: argparse.Namespace) -> int:
    from gpt2scratch.checkpoint import load_checkpoint
    from gpt2scratch.pretrained import save_pretrained

    if Path(args.out).is_file():
        raise ValueError(f"--out {args.out} is a file; give the name of a folder to write")
    ckpt = load_checkpoint(args.checkpoint)
    folder = save_pretrained(ckpt.model, args.out)
    n_params = ckpt.model.num_params()
    print(f"{ckpt.path} -> {folder}/config.json + {folder}/model.safetensors "
          f"({n_params:,} parameters)")
    print(f"load it with transformers.GPT2LMHeadModel.from_pretrained({str(folder)!r}) "
          f"or gpt2scratch.load_pretrained({str(folder)!r})")
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    """Chapter 10's dashboard: every layer x head map of one text, in one offline HTML file."""
    from gpt2scratch.attention_heads import attention_maps, head_stats
    from gpt2scratch.attention_viz import write_dashboard
    from gpt2scratch.runtime import pick_device

    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; give a file name such as attention.html")
    model = _load_model(args, pick_device(args.device))
    tokens, weights = attention_maps(model, args.text)
    stats = head_stats(weights) if len(tokens) > 1 else None
    title = f"Attention maps: {args.checkpoint or args.init}"
    path = write_dashboard(args.out, tokens, weights, stats, title)
    L, H, T, _ = weights.shape
    print(f"{path}: {L} layers x {H} heads, {T} tokens, {path.stat().st_size / 1e6:.2f} MB; "
          "open it in a browser (no server needed)")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from dataclasses import asdict, fields

    from gpt2scratch.generation import SamplingSettings
    from gpt2scratch.runtime import pick_device

    # the sampling flags are named after SamplingSettings' fields; checked before the model loads
    settings = SamplingSettings(**{f.name: getattr(args, f.name) for f in fields(SamplingSettings)})
    device = pick_device(args.device)
    model = _load_model(args, device)
    if args.stream:
        from gpt2scratch.generation import check_decoding, check_prompt, stream_text

        n_new = check_prompt(model, args.prompt, None, args.max_length)
        run = check_decoding(model, None, None, args.seed, not args.no_cache)
    else:
        text = model.generate(args.prompt, max_length=args.max_length, seed=args.seed,
                              use_cache=not args.no_cache, **asdict(settings))
    if not args.stream:
        print(text)
        return 0
    print(args.prompt, end="", flush=True)
    for piece in stream_text(model, args.prompt, n_new, settings=settings, **run):
        print(piece, end="", flush=True)
    print()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Mean next-token cross-entropy over every token of every window of the file (chapter
    05's evaluate, token-weighted: the last, shorter batch counts by its size), and its
    perplexity."""
    from gpt2scratch.data import load_text
    from gpt2scratch.dataset import create_dataloader
    from gpt2scratch.runtime import pick_device
    from gpt2scratch.train import evaluate, perplexity

    text = load_text(args.data)
    device = pick_device(args.device)
    model = _load_model(args, device)
    window = args.context_length or model.config.context_length
    if window > model.config.context_length:
        raise ValueError(f"--context-length {window} is longer than the model's context "
                         f"of {model.config.context_length} tokens")
    loader = create_dataloader(text, batch_size=args.batch_size, context_length=window,
                               shuffle=False, drop_last=False)
    loss = evaluate(model, loader, device=device, per_token=True)
    n_windows = len(loader.dataset)
    print(f"{args.data}: {n_windows:,} windows of {window} tokens; loss {loss:.4f}, "
          f"perplexity {perplexity(loss):.2f} ({args.checkpoint or args.init})")
    return 0
