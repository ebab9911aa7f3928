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
    python -m gpt2scratch tokenizer train --data DIR --vocab-size 4096 --out tok/   # BPE (ch. 01)
    python -m gpt2scratch bench ...   # benchmarks (gpt2scratch.bench)

This module holds the flags (`build_parser`), the error handler and `main()`; the commands live in
`cli_train` (train, run, tokenizer train) and `cli_use` (generate, eval, export, attention), the
benchmarks in `bench`.

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
import re
import sys
import sysconfig
from pathlib import Path

from gpt2scratch.cli_train import PROMPT, cmd_run, cmd_tokenizer_train, cmd_train
from gpt2scratch.cli_use import cmd_attention, cmd_eval, cmd_export, cmd_generate

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


def _layer_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated layer names, got {text!r}")
    return names


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _add_training_options(p: argparse.ArgumentParser, out: str | None,
                          checkpoint_every: int) -> None:
    """The training flags; every default comes from Appendix A's RECIPE (TrainSettings)."""
    from gpt2scratch.model import PRESETS
    from gpt2scratch.run import RECIPE as R

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
                        "chapter 05 section 5.9), or a constant lr (section 5.6)")
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,generate,run,eval,export,attention,tokenizer,bench}")

    p = sub.add_parser("train", help="train a GPT-2 on a UTF-8 text file (90/10 split), saving checkpoints")
    _add_text_data(p, "UTF-8 text to train on: a file (90/10 split), or several files and "
                      "folders (every *.txt, *.md, *.py under a folder; split by document, "
                      "tokens cached next to the data; chapter 09)")
    p.add_argument("--lora-rank", type=_positive_int, default=None, metavar="R",
                   help="fine-tune the --init weights with rank-R LoRA adapters on --lora-targets "
                        "instead of all weights, and save just the adapter (chapter 09)")
    p.add_argument("--lora-alpha", type=_positive_float, default=16.0,
                   help="LoRA scale: the update is multiplied by alpha / rank (default 16)")
    p.add_argument("--lora-targets", type=_layer_names, default=None, metavar="NAMES",
                   help="comma-separated layers to adapt (default attn.c_attn); chapter 09 comes "
                        "closest to full fine-tuning with attn.c_attn,attn.c_proj,mlp.c_fc,"
                        "mlp.c_proj,lm_head (lm_head: the tied embedding too)")
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
    p.add_argument("--min-p", type=float, default=None, metavar="P",
                   help="sample from the tokens at least P times as likely as the likeliest, P in "
                        "[0, 1] (min-p sampling, chapter 8)")
    p.add_argument("--min-tokens-to-keep", type=int, default=1, metavar="N",
                   help="top-k, top-p and min-p keep at least N tokens (default 1)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute the whole window at every step (same tokens, slower; chapter 8)")
    p.add_argument("--stream", action="store_true", help="print the tokens as they are generated")
    p.add_argument("--seed", type=int, default=None, help="random seed for reproducible samples")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("run", help="train the course model (GPT-2 124M, context 256) on The Verdict for 10 "
                                   "epochs with chapter 05's section 5.9 recipe, save runs/verdict/, print a sample")
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

    p = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer on your own text "
                                         "(chapter 01): python -m gpt2scratch tokenizer train --help")
    p = p.add_subparsers(dest="tokenizer_command", required=True, metavar="{train}").add_parser(
        "train", help="learn BPE merges from UTF-8 text and save the tokenizer: OUT/tokenizer.model "
                      "(BPETokenizer.load reads it) and OUT/tokenizer.vocab (every token, readable)")
    _add_text_data(p, "UTF-8 text to train on: files, or folders (every *.txt, *.md, *.py "
                      "under them, each file pre-tokenized on its own)")
    p.add_argument("--vocab-size", required=True, type=_positive_int, metavar="N",
                   help="tokens to learn: the 256 bytes, then merges up to N (at least 256; "
                        "fewer when the text runs out of pairs)")
    p.add_argument("--special", action="append", default=[], metavar="TOKEN",
                   help="a special token to add after the merges, e.g. '<|endoftext|>' "
                        "(repeat the flag for more)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the folder to write tokenizer.model and tokenizer.vocab into")
    p.set_defaults(func=cmd_tokenizer_train)

    sub.add_parser("bench", help="benchmarks: python -m gpt2scratch bench --help", add_help=False)
    return parser


def _add_text_data(p: argparse.ArgumentParser, data_help: str) -> None:
    """--data PATH... and --glob PATTERN: the text files a command trains on."""
    p.add_argument("--data", required=True, nargs="+", metavar="PATH", help=data_help)
    p.add_argument("--glob", metavar="PATTERN", default=None,
                   help="the files to take from a --data folder, e.g. '*.py' (default: *.txt, "
                        "*.md and *.py)")


def _add_model_source(p: argparse.ArgumentParser) -> None:
    """--checkpoint DIR or --init NAME_OR_DIR: the model a command reads."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="DIR", help="checkpoint folder (from train or run)")
    source.add_argument("--init", metavar="NAME_OR_DIR",
                        help="pretrained weights: gpt2, gpt2-medium, gpt2-large, gpt2-xl or a Hugging "
                             "Face folder with config.json + model.safetensors (chapter 07)")


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
    command = " ".join(argv[:2] if argv[:1] in (["bench"], ["tokenizer"]) else argv[:1])
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
