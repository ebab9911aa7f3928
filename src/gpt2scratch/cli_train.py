"""The commands that train: `python -m gpt2scratch train` and `run` (hand-written, part of the CLI).

They read the flags that `__main__.build_parser` defines into Appendix A's TrainSettings, and
train through chapter 09's `lora.train_and_save` (load, optionally add LoRA, train, save) with
chapter 11's fast path, under torchrun on this process's share of every batch. Errors are not
handled here: a check's ValueError reaches `__main__.main`, the one place that handles them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

PROMPT = "Justice is served when"


def _settings(args: argparse.Namespace):
    """The parsed flags as one TrainSettings (Appendix A): the run's settings in one place."""
    from gpt2scratch.run import TrainSettings

    return TrainSettings(
        model=args.model, context_length=args.context_length, batch_size=args.batch_size,
        dropout=args.dropout, lr=args.lr, weight_decay=args.weight_decay,
        schedule=args.schedule, grad_clip=args.grad_clip or None, epochs=args.epochs,
        eval_iters=args.eval_iters, sample_prompt=args.prompt or None, seed=args.seed,
        progress=not args.no_progress)


def _backward_fn(args: argparse.Namespace):
    """train_run()'s `backward=`: autograd (chapter 05) or the hand-written backward (chapter 06)."""
    from gpt2scratch.train import autograd_backward

    if getattr(args, "backward", "autograd") != "manual":
        return autograd_backward
    if getattr(args, "lora_rank", None):
        raise ValueError("--backward manual computes the plain GPT2's gradients, not LoRA "
                         "adapters'; use --backward autograd with --lora-rank")
    from gpt2scratch.backprop import manual_backward

    return manual_backward


def _train_and_report(args: argparse.Namespace, text: str | None, source: str,
                      loaders=None) -> int:
    """Chapter 09's train_and_save with the flags: load (--init, --resume or a new --model),
    add LoRA (--lora-rank), train, save; report what it does, one line at a time."""
    from gpt2scratch.checkpoint import CheckpointWriteError
    from gpt2scratch.lora import DEFAULT_TARGETS, train_and_save
    from gpt2scratch.validation import NonFiniteLossError

    if Path(args.out).is_file():  # found now, not at the first save after an epoch
        raise ValueError(f"--out {args.out} is a file; give the name of a checkpoint folder")
    info, fast, precision = _fast_path(args)  # chapter 11: the process group, the fast path
    if not info.is_main:  # only rank 0 logs
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the rest of this process)
    init, lora = _init_provenance(args), getattr(args, "lora_rank", None)
    out, started = Path(args.out), []  # started: when the first step began

    def ready(run) -> None:  # loaded and prepared, before the first step
        config, steps = run.config, len(run.train_loader)
        n_train = len(run.train_loader.dataset.token_ids)
        n_val = len(run.val_loader.dataset.token_ids)
        n_params = sum(p.numel() for p in run.model.parameters())
        print(f"{source}: {n_train:,} train + {n_val:,} val tokens; {steps} steps per epoch")
        print(precision)  # only now: a text too short for one window stops before this line
        print(f"model: {n_params / 1e6:.1f}M parameters (d_model {config.d_model}, "
              f"{config.n_layers} layers, context {config.context_length}); {args.epochs} "
              f"epochs on {run.device}; checkpoints -> {out}/")
        if init and info.is_main:
            _record_init(out, init)
            print(f"initialised from pretrained weights {args.init!r} (recorded in "
                  f"{out}/init.json); windows of {args.context_length} tokens")
        started.append(time.perf_counter())

    try:
        run, history = train_and_save(
            _settings(args), args.init, text=text, loaders=loaders, rank=lora,
            alpha=getattr(args, "lora_alpha", 16.0),
            targets=getattr(args, "lora_targets", None) or DEFAULT_TARGETS,
            out=out if info.is_main else None,
            resume=args.resume, device=info.device, ready=ready, loop=_loop(args, info, fast))
    except NonFiniteLossError as err:
        print(f"python -m gpt2scratch: {err}", file=sys.stderr)
        return 1
    except CheckpointWriteError as err:  # a full disk, say: the last checkpoint is intact
        print(f"python -m gpt2scratch: {err}\nfree some space, then continue with "
              f"--resume {out}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if not started:  # still loading: there is nothing to resume
            raise
        print(f"\ninterrupted; continue from the last checkpoint with --resume {out}",
              file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - started[0]
    best = min(range(len(history.val_loss)), key=history.val_loss.__getitem__)
    print(f"done in {elapsed / 60:.1f} min: train loss {history.train_loss[-1]:.3f}, val loss "
          f"{history.val_loss[-1]:.3f} (val minimum {history.val_loss[best]:.3f} at epoch "
          f"{history.epoch[best]:.0f})")
    if lora and info.is_main:
        print(f"LoRA adapter: {out}/ (adapter.safetensors + adapter_config.json; "
              f"gpt2scratch.lora.load_adapter puts it on the {args.init!r} weights)")
    else:
        print(f"checkpoint: {out}/  (python -m gpt2scratch generate --checkpoint {out} "
              f"\"{PROMPT}\")")
    if args.prompt:
        text = run.model.generate(args.prompt, max_length=50, temperature=0.8, seed=args.seed)
        print(f"\n{args.prompt!r} continued (50 tokens, temperature 0.8, seed {args.seed}):"
              f"\n{text}")
    return 0


def _loop(args: argparse.Namespace, info, fast):
    """train_and_save's `loop`: chapter 11's fast path (under torchrun, DDP on this rank's
    share of every batch), or with chapter 06's hand-written backward Appendix A's plain
    train_run(); a checkpoint every --checkpoint-every epochs."""
    from gpt2scratch.ddp import train_distributed
    from gpt2scratch.trainer import train_run

    def loop(model, train_loader, *rest, **options):
        options["checkpoint_every"] = args.checkpoint_every * len(train_loader)
        if fast is None:
            return train_run(model, train_loader, *rest, backward=_backward_fn(args), **options)
        return train_distributed(model, train_loader, *rest, info=info, fast=fast, **options)

    return loop


def _fast_path(args: argparse.Namespace):
    """(DistInfo, FastPath or None, the precision line) for this process (chapter 11). Under
    torchrun it joins the process group; FastPath is None with chapter 06's hand-written
    backward. The line says what --precision resolves to, and why."""
    import torch

    from gpt2scratch.measure import keep_freed_memory
    from gpt2scratch.ddp import check_batch_split, init_distributed
    from gpt2scratch.scale import FastPath, resolve_precision

    info = init_distributed(args.device)
    dtype, why = resolve_precision(args.precision, info.device)  # a bad value stops here
    manual = getattr(args, "backward", "autograd") == "manual"
    if manual and (info.world_size > 1 or args.accum_steps > 1):
        raise ValueError("--backward manual runs in one process without "
                         "--accum-steps; use --backward autograd")
    if manual and args.precision == "bf16":
        raise ValueError("--backward manual computes in fp32 (chapter 06's hand-written "
                         "backward has no autocast); use --precision fp32 or auto")
    if manual:
        dtype, why = torch.float32, "--backward manual: chapter 06's backward is fp32"
    precision = f"precision: {'bf16' if dtype == torch.bfloat16 else 'fp32'} ({why})"
    if manual:
        return info, None, precision
    off = {name: False for name in ("flash", "compile", "fused_adamw", "pad_vocab")
           if getattr(args, "no_" + name)}
    fast = FastPath.auto(info.device, precision=args.precision,
                         accum_steps=args.accum_steps, **off)
    check_batch_split(args.batch_size, info.world_size, fast.accum_steps)
    if info.device.type == "cpu":
        keep_freed_memory()  # glibc keeps freed blocks: no page faults each step
    return info, fast, precision


def _init_provenance(args: argparse.Namespace) -> dict | None:
    """Where the --init weights come from, for <out>/init.json; None without --init."""
    if args.init is None:
        return None
    if args.resume is not None:
        raise ValueError("--init starts a run from pretrained weights and --resume continues "
                         "a checkpoint: pass one of them")
    from gpt2scratch.pretrained import HUB_REPOS, find_pretrained

    config_file, weights_file = find_pretrained(args.init)
    return {"init": args.init, "repo": HUB_REPOS.get(args.init),
            "config_file": str(config_file.resolve()),
            "weights_file": str(weights_file.resolve())}


def _record_init(out: Path, provenance: dict) -> None:
    """Write <out>/init.json (atomically): where the run's starting weights came from."""
    import json

    from gpt2scratch.files import atomic_write

    text = json.dumps({"format": "gpt2scratch-init", **provenance}, indent=2) + "\n"
    atomic_write(out / "init.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _check_precision(args: argparse.Namespace) -> None:
    """A bad --precision stops the command before it reads any text (ValueError: one line);
    _fast_path resolves it for the device the run takes."""
    from gpt2scratch.scale import resolve_precision

    resolve_precision(args.precision, "cpu")


def cmd_train(args: argparse.Namespace) -> int:
    from gpt2scratch.data import load_text

    _check_precision(args)
    if args.lora_rank is not None and args.init is None:
        raise ValueError("--lora-rank adapts pretrained weights: pass --init NAME_OR_DIR too")
    if args.lora_targets is not None and args.lora_rank is None:
        raise ValueError("--lora-targets names the layers that --lora-rank adapts: pass "
                         "--lora-rank R too")
    if args.lora_rank is not None and args.resume is not None:
        raise ValueError("--lora-rank saves just the adapter, which cannot be resumed: "
                         "start again with --init")
    if args.out is None:
        args.out = args.resume if args.resume is not None else str(
            Path("runs") / Path(args.data[0]).resolve().stem)
    if len(args.data) == 1 and args.glob is None and not Path(args.data[0]).is_dir():
        text = load_text(args.data[0])
        return _train_and_report(args, text, str(args.data[0]))
    source = ", ".join(args.data) + (f" ({args.glob})" if args.glob else "")
    return _train_and_report(args, None, source, loaders=_corpus_loaders(args))


def _corpus_loaders(args: argparse.Namespace):
    """Train/val loaders over the --data files and folders (Appendix A's corpus, chapter 09)."""
    from gpt2scratch.corpus import corpus_loaders, prepare_corpus

    corpus = prepare_corpus(args.data, args.glob, progress=not args.no_progress)
    for message in corpus.skipped:
        print(f"warning: skipped {message}", file=sys.stderr)
    docs = corpus.documents
    print(f"corpus: {corpus.files} files, {docs['train']} train + {docs['val']} val "
          f"documents (tokens cached in {corpus.folder})")
    return corpus_loaders(corpus, args.context_length, args.batch_size, args.seed)


def cmd_run(args: argparse.Namespace) -> int:
    """The course model with chapter 05's section 5.9 recipe: 10 epochs, warm-up + cosine decay, clipping."""
    from gpt2scratch.data import verdict_text

    _check_precision(args)
    schedule = ("warm-up + cosine decay" if args.schedule == "cosine" else "constant lr") + (
        f", gradient clipping at {args.grad_clip:g}" if args.grad_clip else "")
    print(f"make run: GPT-2 {args.model} (context {args.context_length}) on The Verdict, chapter 05 section 5.9: "
          f"{args.epochs} epochs, batch {args.batch_size}, AdamW lr {args.lr:g} ({schedule}), weight decay "
          f"{args.weight_decay:g}, dropout {args.dropout:g}, seed {args.seed}")
    t0 = time.perf_counter()
    text = verdict_text()
    code = _train_and_report(args, text, "The Verdict")
    print(f"\nmake run took {(time.perf_counter() - t0) / 60:.1f} min")
    return code


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    """Chapter 01's BPE trainer on your own text: a file, or the text files under folders
    (read one at a time, skipping what is not UTF-8 text, as `train` does); writes
    OUT/tokenizer.model and OUT/tokenizer.vocab."""
    from gpt2scratch.corpus import NotTextError, find_files, read_pieces
    from gpt2scratch.tokenizer_basics import train_bpe
    from gpt2scratch.validation import check_int

    check_int("--vocab-size", args.vocab_size, minimum=256)  # the 256 bytes come first
    out = Path(args.out)
    if out.is_file():
        raise ValueError(f"--out {out} is a file; give the name of a folder to write")
    files = find_files(args.data, args.glob)
    skipped, read = [], {"files": 0, "chars": 0}

    def texts():
        for path in files:
            try:
                text = "".join(piece for piece, _ in read_pieces(path))
            except NotTextError as err:
                skipped.append(str(err))
                continue
            read["files"] += 1
            read["chars"] += len(text)
            yield text

    t0 = time.perf_counter()
    tokenizer = train_bpe(texts(), args.vocab_size)
    seconds = time.perf_counter() - t0
    for message in skipped:
        print(f"warning: skipped {message}", file=sys.stderr)
    if not read["chars"]:
        raise ValueError(f"no text to train on in {', '.join(args.data)}: "
                         + (f"none of the {len(files)} files is UTF-8 text" if skipped
                            else "the files are empty"))
    specials = list(dict.fromkeys(args.special))
    tokenizer.register_special_tokens({t: tokenizer.n_vocab + k for k, t in enumerate(specials)})
    model, vocab = tokenizer.save(out / "tokenizer")
    print(f"trained on {read['files']} file(s), {read['chars']:,} characters, in {seconds:.1f} s: "
          f"{tokenizer.n_vocab:,} tokens (256 bytes, {len(tokenizer.merges):,} merges, "
          f"{len(specials)} special)")
    if len(tokenizer.merges) < args.vocab_size - 256:
        print(f"(fewer than --vocab-size {args.vocab_size}: every chunk of the text is one "
              "token already)")
    print(f"wrote {model} (the tokenizer) and {vocab} (every token, readable)")
    print(f"load it: gpt2scratch.tokenizer_basics.BPETokenizer.load({str(model)!r})")
    return 0
