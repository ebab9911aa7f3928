"""Command line for gpt2scratch (hand-written; it sits on top of the generated modules).

    python -m gpt2scratch train --data story.txt [--model 124M --epochs 10 --out runs/story ...]
    python -m gpt2scratch train --data story.txt --epochs 20 --resume runs/story
    python -m gpt2scratch generate --checkpoint runs/story "Justice is served when" --max-length 100
    python -m gpt2scratch generate --init gpt2 "Justice is served when"   # or --init HF_FOLDER
    python -m gpt2scratch run         # what `make run` calls: the course model on The Verdict
    python -m gpt2scratch run --precision fp32   # chapter 5 exactly (auto: bf16 on bf16 units)
    python -m gpt2scratch train --init gpt2 --data story.txt   # fine-tune pretrained GPT-2 (ch. 07)
    python -m gpt2scratch export --checkpoint runs/story --out hf/story   # a Hugging Face folder
    python -m gpt2scratch attention --checkpoint runs/verdict "Every effort moves you" --out attention.html
    python -m gpt2scratch bench ...   # benchmarks (gpt2scratch.bench)

Errors are handled in one place, `main()`:
- bad input (a bad value, a missing or non-UTF-8 file, a text too short for one window, a bad
  checkpoint): the ValueError, TypeError or FileNotFoundError that our own checks raise
  (CONTRIBUTING, "One error contract") becomes one line on stderr and exit code 2;
- a missing optional dependency (`transformers` for `bench`): one line that says what to install,
  exit code 2;
- anything else (CUDA, NCCL, an error inside torch, a bug) keeps its traceback.
"""
from __future__ import annotations

import argparse
import dis
import math
import os
import re
import sys
import sysconfig
import time
from pathlib import Path

PROMPT = "Justice is served when"
PACKAGE = Path(__file__).resolve().parent
BAD_PATH = (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _top_p(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _add_training_options(p: argparse.ArgumentParser, out: str | None,
                          checkpoint_every: int) -> None:
    """The training flags; every default comes from chapter 05's RECIPE (TrainSettings)."""
    from gpt2scratch.model import PRESETS
    from gpt2scratch.train import RECIPE as R

    p.add_argument("--epochs", type=_positive_int, default=R.epochs,
                   help=f"total epochs to train to (default {R.epochs})")
    p.add_argument("--batch-size", type=_positive_int, default=R.batch_size,
                   help=f"windows per batch (default {R.batch_size})")
    p.add_argument("--context-length", type=_positive_int, default=R.context_length,
                   help=f"tokens per window (default {R.context_length})")
    p.add_argument("--lr", type=_positive_float, default=R.lr,
                   help=f"AdamW peak learning rate (default {R.lr:g})")
    p.add_argument("--weight-decay", type=_non_negative_float, default=R.weight_decay,
                   help=f"AdamW weight decay (default {R.weight_decay:g})")
    p.add_argument("--dropout", type=_non_negative_float, default=R.dropout,
                   help=f"dropout rate (default {R.dropout:g})")
    p.add_argument("--model", default=R.model,
                   help=f"a GPT2Config preset: {' | '.join(PRESETS)} (default {R.model})")
    p.add_argument("--schedule", choices=("cosine", "constant"), default=R.schedule,
                   help="10%% linear warm-up + cosine decay to 10%% of --lr (default, "
                        "chapter 05 section 5.8), or a constant lr (section 5.6)")
    p.add_argument("--grad-clip", type=_non_negative_float, default=R.grad_clip,
                   help=f"clip the global gradient norm to this (default {R.grad_clip:g}; "
                        "0 = off)")
    p.add_argument("--eval-iters", type=_positive_int, default=R.eval_iters,
                   help=f"batches per loss estimate (default {R.eval_iters})")
    p.add_argument("--out", default=out, help="checkpoint folder" + (
        f" (default {out})" if out else " (default runs/<data file name>)"))
    p.add_argument("--checkpoint-every", type=_positive_int, default=checkpoint_every,
                   metavar="EPOCHS", help="save a checkpoint every this many epochs, and at "
                                          f"the end (default {checkpoint_every})")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the checkpoint in DIR (its model config wins over "
                        "--model/--dropout)")
    p.add_argument("--init", metavar="NAME_OR_DIR", default=None,
                   help="start from pretrained weights: gpt2, gpt2-medium, gpt2-large, "
                        "gpt2-xl or a Hugging Face folder (config.json + model.safetensors); "
                        "their config wins over --model/--dropout (chapter 07)")
    p.add_argument("--seed", type=int, default=R.seed, help=f"random seed (default {R.seed})")
    p.add_argument("--device", default="auto",
                   help="auto (cuda -> mps -> cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--prompt", default=PROMPT,
                   help=f"text to continue after each epoch (default {PROMPT!r})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--backward", choices=("autograd", "manual"), default="autograd",
                   help="how the gradients are computed: autograd (default), or manual, "
                        "chapter 06's hand-written backward (gpt2scratch.backprop)")
    p.add_argument("--accum-steps", type=_positive_int, default=1, metavar="K",
                   help="gradient accumulation: split each batch into K micro-batches, one "
                        "optimizer step per batch (default 1; chapter 11)")
    p.add_argument("--precision", default="auto", metavar="fp32|bf16|auto",
                   help="fp32, bf16 (autocast: the matmuls in bf16; the weights, AdamW's "
                        "state and the loss stay fp32) or auto (default): bf16 where the "
                        "CPU has bf16 units (AVX512-BF16, AMX) or the GPU supports bf16, "
                        "else fp32; GPT2SCRATCH_QUICK=1 pins fp32 (chapter 11)")
    for part, what in (("flash", "flash attention (SDPA's fused kernel)"),
                       ("compile", "torch.compile"), ("fused-adamw", "fused AdamW"),
                       ("pad-vocab", "the LM head padded to 50304 logits")):
        p.add_argument(f"--no-{part}", action="store_true",
                       help=f"turn off {what}, part of chapter 11's fast path (compile and "
                            "padding are on by default on a GPU only)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gpt2scratch",
                                     description="GPT-2 from scratch: train, generate, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,generate,run,eval,export,attention,bench}")

    p = sub.add_parser("train", help="train a GPT-2 on a UTF-8 text file (90/10 split), saving checkpoints")
    p.add_argument("--data", required=True, nargs="+", metavar="PATH",
                   help="UTF-8 text to train on: a file (90/10 split), or several files and "
                        "folders (every *.txt, *.md, *.py under a folder; split by document, "
                        "tokens cached next to the data; chapter 09)")
    p.add_argument("--glob", metavar="PATTERN", default=None,
                   help="the files to take from a --data folder, e.g. '*.py' (default: *.txt, "
                        "*.md and *.py)")
    p.add_argument("--lora-rank", type=_positive_int, default=None, metavar="R",
                   help="fine-tune the --init weights with rank-R LoRA adapters on attn.c_attn "
                        "instead of all weights, and save just the adapter (chapter 09)")
    p.add_argument("--lora-alpha", type=_positive_float, default=16.0,
                   help="LoRA scale: the update is multiplied by alpha / rank (default 16)")
    _add_training_options(p, out=None, checkpoint_every=1)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="continue a prompt with a trained checkpoint or "
                                     "pretrained weights")
    p.add_argument("prompt", help="the text to continue")
    _add_model_source(p)
    p.add_argument("--max-length", type=_positive_int, default=100, help="new tokens to generate (default 100)")
    p.add_argument("--temperature", type=_non_negative_float, default=0.8, help="0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=_positive_int, default=None, help="sample from the k likeliest tokens only")
    p.add_argument("--top-p", type=_top_p, default=None,
                   help="sample from the smallest set of likeliest tokens whose probabilities sum to "
                        ">= P, in (0, 1] (nucleus sampling, chapter 8)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute the whole window at every step (same tokens, slower; chapter 8)")
    p.add_argument("--stream", action="store_true", help="print the tokens as they are generated")
    p.add_argument("--seed", type=int, default=None, help="random seed for reproducible samples")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("run", help="train the course model (GPT-2 124M, context 256) on The Verdict for 10 "
                                   "epochs with chapter 05's section 5.8 recipe, save runs/verdict/, print a sample")
    _add_training_options(p, out="runs/verdict", checkpoint_every=5)  # 1.5 GB a save
    p.set_defaults(func=cmd_run, data=None)

    p = sub.add_parser("export", help="write a checkpoint as a Hugging Face folder (config.json + "
                                      "model.safetensors) that transformers.GPT2LMHeadModel loads")
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint folder (from train or run)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("attention", help="write a self-contained HTML dashboard of a checkpoint's "
                                         "attention maps for a text (chapter 10)")
    p.add_argument("text", help="the text whose attention maps to show")
    _add_model_source(p)
    p.add_argument("--out", default="attention.html", metavar="FILE",
                   help="the HTML file to write (default attention.html)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N or mps")
    p.set_defaults(func=cmd_attention)

    p = sub.add_parser("eval", help="loss and perplexity of a checkpoint (or pretrained weights) "
                                    "on a UTF-8 text file")
    p.add_argument("--data", required=True, metavar="FILE", help="UTF-8 text to score")
    _add_model_source(p)
    p.add_argument("--context-length", type=_positive_int, default=None,
                   help="tokens per window (default: the model's context length)")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="windows per batch (default 8)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=cmd_eval)

    sub.add_parser("bench", help="benchmarks: python -m gpt2scratch bench --help", add_help=False)
    return parser


def _add_model_source(p: argparse.ArgumentParser) -> None:
    """--checkpoint DIR or --init NAME_OR_DIR: the model a command reads."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="DIR", help="checkpoint folder (from train or run)")
    source.add_argument("--init", metavar="NAME_OR_DIR",
                        help="pretrained weights: gpt2, gpt2-medium, gpt2-large, gpt2-xl or a Hugging "
                             "Face folder with config.json + model.safetensors (chapter 07)")


def _load_model(args: argparse.Namespace, device):
    """The model --checkpoint or --init names, on `device`."""
    if getattr(args, "init", None) is not None:
        from gpt2scratch.pretrained import load_pretrained

        return load_pretrained(args.init, device=device)
    from gpt2scratch.checkpoint import load_checkpoint

    return load_checkpoint(args.checkpoint, device=device).model


def _settings(args: argparse.Namespace):
    """The parsed flags as one TrainSettings (chapter 05): the run's settings in one place."""
    from gpt2scratch.train import TrainSettings

    return TrainSettings(
        model=args.model, context_length=args.context_length, batch_size=args.batch_size,
        dropout=args.dropout, lr=args.lr, weight_decay=args.weight_decay,
        schedule=args.schedule, grad_clip=args.grad_clip or None, epochs=args.epochs,
        eval_iters=args.eval_iters, sample_prompt=args.prompt or None, seed=args.seed,
        progress=not args.no_progress)


def _backward_fn(args: argparse.Namespace):
    """train()'s `backward=`: autograd (chapter 05) or the hand-written backward (chapter 06)."""
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
    from gpt2scratch.lora import train_and_save
    from gpt2scratch.train import NonFiniteLossError

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
            alpha=getattr(args, "lora_alpha", 16.0), out=out if info.is_main else None,
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
    share of every batch), or with chapter 06's hand-written backward chapter 05's plain
    train(); a checkpoint every --checkpoint-every epochs."""
    from gpt2scratch.scale import train_distributed
    from gpt2scratch.train import train

    def loop(model, train_loader, *rest, **options):
        options["checkpoint_every"] = args.checkpoint_every * len(train_loader)
        if fast is None:
            return train(model, train_loader, *rest, backward=_backward_fn(args), **options)
        return train_distributed(model, train_loader, *rest, info=info, fast=fast, **options)

    return loop


def _fast_path(args: argparse.Namespace):
    """(DistInfo, FastPath or None, the precision line) for this process (chapter 11). Under
    torchrun it joins the process group; FastPath is None with chapter 06's hand-written
    backward. The line says what --precision resolves to, and why."""
    import torch

    from gpt2scratch.measure import keep_freed_memory
    from gpt2scratch.scale import FastPath, check_batch_split, init_distributed, resolve_precision

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
    """The course model with chapter 05's section 5.8 recipe: 10 epochs, warm-up + cosine decay, clipping."""
    from gpt2scratch.data import verdict_text

    _check_precision(args)
    schedule = ("warm-up + cosine decay" if args.schedule == "cosine" else "constant lr") + (
        f", gradient clipping at {args.grad_clip:g}" if args.grad_clip else "")
    print(f"make run: GPT-2 {args.model} (context {args.context_length}) on The Verdict, chapter 05 section 5.8: "
          f"{args.epochs} epochs, batch {args.batch_size}, AdamW lr {args.lr:g} ({schedule}), weight decay "
          f"{args.weight_decay:g}, dropout {args.dropout:g}, seed {args.seed}")
    t0 = time.perf_counter()
    text = verdict_text()
    code = _train_and_report(args, text, "The Verdict")
    print(f"\nmake run took {(time.perf_counter() - t0) / 60:.1f} min")
    return code


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
    from gpt2scratch.train import pick_device

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
    from gpt2scratch.train import pick_device

    device = pick_device(args.device)
    model = _load_model(args, device)
    if args.stream:
        from gpt2scratch.generation import check_prompt, check_sampling, stream_text

        n_new = check_prompt(model, args.prompt, None, args.max_length)
        sampling = check_sampling(model, args.temperature, args.top_k, args.top_p, None, None,
                                  args.seed, not args.no_cache)
    else:
        text = model.generate(args.prompt, max_length=args.max_length, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                              use_cache=not args.no_cache)
    if not args.stream:
        print(text)
        return 0
    print(args.prompt, end="", flush=True)
    for piece in stream_text(model, args.prompt, n_new, **sampling):
        print(piece, end="", flush=True)
    print()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Mean next-token cross-entropy over every window of the file, and its perplexity."""
    from gpt2scratch.data import load_text
    from gpt2scratch.dataset import create_dataloader
    import torch
    import torch.nn.functional as F

    from gpt2scratch.train import perplexity, pick_device

    text = load_text(args.data)
    device = pick_device(args.device)
    model = _load_model(args, device)
    window = args.context_length or model.config.context_length
    if window > model.config.context_length:
        raise ValueError(f"--context-length {window} is longer than the model's context "
                         f"of {model.config.context_length} tokens")
    loader = create_dataloader(text, batch_size=args.batch_size, context_length=window,
                               shuffle=False, drop_last=False)
    total, n_tokens = 0.0, 0
    model.eval()
    with torch.no_grad():  # every token weighs the same, the last, shorter batch too
        for inputs, targets in loader:
            logits = model(inputs.to(device)).flatten(0, 1).float()  # (B*T, V)
            targets = targets.to(device).flatten()
            total += F.cross_entropy(logits, targets, reduction="sum").item()
            n_tokens += targets.numel()
    loss = total / n_tokens
    n_windows = len(loader.dataset)
    print(f"{args.data}: {n_windows:,} windows of {window} tokens; loss {loss:.4f}, "
          f"perplexity {perplexity(loss):.2f} ({args.checkpoint or args.init})")
    return 0


def _in_stdlib(filename: str) -> bool:
    """A file of Python's standard library (pathlib, os, shutil), not of an installed package."""
    paths = sysconfig.get_paths()
    path = Path(filename).resolve()
    return path.is_relative_to(Path(paths["stdlib"]).resolve()) and not any(
        path.is_relative_to(Path(paths[key]).resolve()) for key in ("purelib", "platlib"))


def _raised_by_our_checks(err: BaseException) -> bool:
    """True when `err` comes from a `raise` statement in this package: a check that names
    the bad value. A TypeError from a bug (`len(None)`) or a ValueError from inside torch
    is raised by an operation or by another library, so it keeps its traceback. A bad path
    (FileNotFoundError, ...) also counts when our own file handling meets it, directly or
    through the standard library (pathlib's mkdir, open)."""
    frames, tb = [], err.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code, tb.tb_lasti))
        tb = tb.tb_next
    if isinstance(err, BAD_PATH):
        while frames and _in_stdlib(frames[-1][0].co_filename):
            frames.pop()
    if not frames or not Path(frames[-1][0].co_filename).resolve().is_relative_to(PACKAGE):
        return False
    code, offset = frames[-1]
    return isinstance(err, BAD_PATH) or any(
        i.offset == offset and i.opname == "RAISE_VARARGS" for i in dis.get_instructions(code))


def _install_hint(err: ModuleNotFoundError) -> str | None:
    """How to install the missing module: its pinned line in requirements*.txt. None for a
    module that no requirements file names (our own, or a typo): a bug, keep the traceback."""
    name = (err.name or "").partition(".")[0]
    root = PACKAGE.parent.parent  # the repository, when the package is installed from it
    if not name or name == "gpt2scratch":
        return None
    for req in ("requirements.txt", "requirements-dev.txt"):
        if not (root / req).is_file():  # installed without the repository: no pins at hand
            return f"pip install {name}"
        for line in (root / req).read_text(encoding="utf-8").splitlines():
            pin = re.match(r"([A-Za-z0-9_.-]+)==", line.strip())
            if pin and pin.group(1).lower().replace("-", "_") == name.lower():
                return f"pip install {line.strip()}, or pip install -r {req} for all of them"
    return None


def _one_line(err: Exception) -> str | None:
    """The message for an error the user can fix themselves, else None (a traceback)."""
    from gpt2scratch.data import DataUnavailableError

    if isinstance(err, ModuleNotFoundError):
        hint = _install_hint(err)
        return hint and f"this command needs {err.name!r}, which is not installed: {hint}"
    bad_input = (ValueError, TypeError, DataUnavailableError, *BAD_PATH)
    return str(err) if isinstance(err, bad_input) and _raised_by_our_checks(err) else None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(argv[:2] if argv[:1] == ["bench"] else argv[:1])
    try:  # the one place that turns an error into a message and an exit code
        if argv and argv[0] == "bench":
            from gpt2scratch import bench  # lazy: benchmarks pull in optional dependencies

            return bench.main(argv[1:]) or 0
        args = build_parser().parse_args(argv)
        return args.func(args)
    except Exception as err:
        message = _one_line(err)
        if message is None:
            raise  # unexpected (CUDA, NCCL, torch, a bug): the traceback says where
        print(f"python -m gpt2scratch {command}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    sys.exit(main())
