"""Check that every number in the prose appears in the outputs it describes (standard library only).

    python tools/prose_numbers.py                   every chapter and appendix, then README.md
    python tools/prose_numbers.py chapters/X.ipynb  just these notebooks
    python tools/prose_numbers.py --readme          README.md only
    python tools/prose_numbers.py -v ...            also list every exempted number and its rule

It reads committed files; it runs nothing. For each number in a notebook's markdown cells it looks
for the same number in that notebook's stored outputs (stdout, text/plain, text/html tables), and
prints one line per number it cannot find (notebook, 0-based cell index, the number, a snippet),
then a summary line per notebook. Exit 1 when any number is unmatched.

Two numbers are the same after normalising: thousands separators (5,145 == 5145), signs and the
unicode minus (compared by size), scientific notation (1e-6 == 1.0e-06 == 10^-6 == 10⁻⁶), ratios
(1.57× and ×1.57 are 1.57), size suffixes (124M == 124,439,808 to three digits), and rounding to
the digits the prose shows (prose 6.4 matches 6.405; 54% matches 54.3% and 0.5432). After "about",
"roughly", "~" or "≈", an integer's trailing zeros are not significant (about 400 MiB matches 417).

A sentence that names another chapter ("chapter 5", a link to 05_training.ipynb) may quote that
chapter's outputs, and a number next to a committed `benchmarks/*.json` or `.log` file may quote
that file: both are checked there too (counted as "cited", a kind of match).

What is exempt, each by one rule, counted per notebook:

- name: digits inside a name or a version (GPT-2, fp32, H200, AVX-512, 01_tokenizer, 1.0.4,
  Python 3.10, 2D);
- reference: numbers that point at something: a section, chapter, cell, exercise, figure, table,
  step, layer, head, epoch, position, line or list item (section 5.3, chapters 7-10, layer 1,
  head 2, heading and list numbers, ordinals such as 4th);
- year: 1900-2099 in a date-like context ((1908, ...), et al., 2016, Gage, 1994, 2026-11-27);
- small: an integer from 0 to 10 without a unit, ratio or percent sign. It is a word-sized count
  (two layers, 4 heads, 3 steps); every chapter prints 0-10 many times over, so a match would
  prove nothing, and such numbers are read by hand;
- code: the value is a literal in the notebook's own code cells (a learning rate of 4e-4, 768,
  50_257 written 50,257 in prose): a setting the reader can see, not a result;
- arithmetic: operands and result of arithmetic the sentence spells out (12 × 64 = 768, with =,
  ≈, is or equals). The checker evaluates it and reports arithmetic that does not hold;
- citation: a number next to its source, in the same clause and within 80 characters: a link to
  a web page, or a named source (the GPT-2 paper, rasbt, nanoGPT, llm.c, Hugging Face, ...);
- inline code/math: a number inside an `inline code` span or $math$ that is code or a formula
  (n_embd=768, $\\sqrt{64}$), not a bare quoted number;
- allowlist: the definitions in ALLOWLIST below (float32's 24 significand bits, ...), each with
  the words that must stand near it.

README.md is checked the same way against benchmarks/runs.json, the committed record of the runs
its figures come from (each entry says when, on what machine, and where it was first reported),
and against the chapters a sentence names. Its chapter table is checked row by row: "read" is the
estimate computed here (READ_WORDS words and READ_CODE_LINES lines of code a minute, rounded to 5
minutes) and "run (quick)" is that chapter's time in the record.
"""
from __future__ import annotations

import argparse
import ast
import bisect
import html
import io
import json
import math
import re
import sys
import tokenize
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from book_check import text_of
from chapters import ROOT, chapter_notebooks, label

RULES = ("name", "reference", "year", "small", "code", "arithmetic", "citation",
         "inline code/math", "allowlist")
README = ROOT / "README.md"
RUNS = ROOT / "benchmarks" / "runs.json"
READ_WORDS, READ_CODE_LINES = 200, 20  # the README's reading speed: words, code lines a minute

# Definitions that no output prints: (value, words that must stand in the same clause, why).
# Bit counts of 10 and under (bf16's 8 exponent and 7 mantissa bits) are already "small".
ALLOWLIST = [
    (24, r"significan|mantissa", "float32 keeps 24 significand bits (23 stored, 1 implicit)"),
]

# --- reading numbers ------------------------------------------------------------------------------

SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
NUMBER = re.compile(
    r"(?P<pow>10\s*\^\s*\{?\s*(?P<pexp>[-−]?\s*\d+)\s*\}?)"
    r"|(?P<sup>10[⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)"
    r"|(?P<num>(?:\d{1,3}(?:(?:,|\{,\})\d{3})+(?!\d)|\d+)(?:\.\d+)?)"
    r"(?:(?P<e>[eE][-−+]?\d+)|\s*(?:×|\\times|\\cdot)\s*10\s*\^\s*\{?\s*(?P<mexp>[-−]?\d+)\s*\}?)?"
)
SCALE = {"k": 3, "K": 3, "M": 6, "B": 9, "G": 9}
UNITS = {"ms", "s", "min", "h", "us", "µs", "ns", "GB", "MB", "kB", "KB", "TB", "KiB", "MiB",
         "GiB", "bit", "bits", "px", "GHz", "MHz", "x", "tok", "GFLOP", "TFLOP", "FLOP",
         "FLOPs", "TFLOPs", "GFLOPs"}
ORDINAL = {"st", "nd", "rd", "th"}
UNIT_WORD = re.compile(r"\s*(?:ms|s|sec|seconds?|min|minutes?|hours?|h|µs|us|ns|[kKMGT]i?B|bytes?"
                       r"|bits?|GFLOP|TFLOP|tok/s|tokens/s|%|percent|×|x|times|-fold)(?![A-Za-z])")
APPROX = re.compile(r"(?:\babout|\broughly|\baround|\bapproximately|\bnearly|\balmost|~|≈)\s*\Z", re.I)
WORD_SCALE = re.compile(r"\s(?:(?P<k>thousand)|(?P<M>million)|(?P<B>billion))\b")
MODEL_SIZE = re.compile(r"(?:117|124|345|350|355|762|774|1542|1558)M\b|1\.5B\b")


@dataclass
class Num:
    text: str
    start: int
    end: int
    value: Decimal
    quantum: Decimal
    kind: str = "prose"  # prose, code (inline or fenced), math
    percent: bool = False
    scale: int = 0
    unit: bool = False  # followed by a unit, ratio sign or "times"
    integer: bool = False
    rule: str | None = None  # the exemption, "matched", "cited" or None (unmatched)

    def candidates(self) -> list[tuple[float, float]]:
        out = [(float(self.value), float(self.quantum))]
        if self.percent:
            out.append((float(self.value) / 100, float(self.quantum) / 100))
        if self.scale:
            out.append((float(self.value.scaleb(self.scale)), float(self.quantum.scaleb(self.scale))))
        return out


def parse(match: re.Match) -> tuple[Decimal, Decimal, bool]:
    """(size, quantum, integer) of one NUMBER match: the prose's rounding is quantum / 2."""
    if match["pow"] or match["sup"]:
        exp = (match["pexp"] or match["sup"][2:].translate(SUPERSCRIPT)).replace("−", "-")
        exp = int(exp.replace(" ", ""))
        return Decimal(1).scaleb(exp), Decimal(1).scaleb(exp), False
    digits = match["num"].replace("{,}", "").replace(",", "")
    value = Decimal(digits)
    quantum = Decimal(1).scaleb(-(len(digits.split(".")[1]) if "." in digits else 0))
    exp = match["e"][1:] if match["e"] else match["mexp"]
    if exp:
        exp = int(exp.replace("−", "-"))
        return value.scaleb(exp), quantum.scaleb(exp), False
    return value, quantum, "." not in digits


def output_numbers(text: str) -> list[float]:
    """Every number an output shows, generously: thousands joined and split, %, k/M/B scaled."""
    found: list[float] = []
    for match in NUMBER.finditer(text):
        value = float(parse(match)[0])
        found.append(value)
        if match["num"] and "," in match["num"] and not match["e"]:
            found += [float(part) for part in re.split(r"\{?,\}?", match["num"].split(".")[0])]
        after = text[match.end():match.end() + 1]
        if after == "%":
            found.append(value / 100)
        elif after in SCALE:
            found.append(value * 10 ** SCALE[after])
    return found


class Pool:
    """A sorted bag of sizes, to ask: is there one within the prose's rounding of this value?"""

    def __init__(self, values=()):
        self.values = sorted(abs(v) for v in values)

    def has(self, value: float, quantum: float) -> bool:
        tolerance = quantum / 2 * (1 + 1e-9) + abs(value) * 1e-12
        i = bisect.bisect_left(self.values, abs(value) - tolerance)
        return i < len(self.values) and self.values[i] <= abs(value) + tolerance

    def exact(self, value: float) -> bool:
        return self.has(value, abs(value) * 2e-12)


# --- reading notebooks ----------------------------------------------------------------------------


def output_text(output: dict) -> str:
    """What a reader sees of one output, as text: stdout, text/* (HTML without its tags), errors."""
    if output.get("output_type") == "stream":
        return text_of(output.get("text")) if output.get("name") == "stdout" else ""
    if output.get("output_type") == "error":
        return output.get("evalue", "")
    parts = []
    for mime, value in (output.get("data") or {}).items():
        if mime == "text/html":
            parts.append(html.unescape(re.sub(r"<[^>]+>", " ", text_of(value))))
        elif mime.startswith("text/"):
            parts.append(text_of(value))
    return "\n".join(parts)


def load_cells(path: Path) -> list[dict]:
    return json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])


def outputs_pool(cells: list[dict]) -> Pool:
    return Pool(v for cell in cells if cell.get("cell_type") == "code"
                for out in cell.get("outputs", []) for v in output_numbers(output_text(out)))


def literals_in(source: str) -> list[float]:
    """Numeric literals of Python source: tokenize's NUMBER tokens, also inside f-string fields
    (comments and plain strings skipped)."""
    values: list[float] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source + "\n").readline):
            if token.type == tokenize.NUMBER:
                try:
                    values.append(float(ast.literal_eval(token.string).real))
                except (ValueError, SyntaxError, OverflowError):
                    pass
            elif token.type == tokenize.STRING and re.match(r"[rbRB]?[fF]", token.string):
                for expression in re.findall(r"\{([^{}]+)\}", token.string):
                    values += literals_in(expression.split("!")[0].split(":")[0])
    except (tokenize.TokenError, IndentationError, SyntaxError):
        values += output_numbers(source)
    return values


def code_literals(cells: list[dict]) -> Pool:
    """Numeric literals of the code cells (IPython magics and shell lines left out)."""
    return Pool(v for cell in cells if cell.get("cell_type") == "code"
                for v in literals_in("\n".join(
                    "" if line.lstrip().startswith(("%", "!")) else line
                    for line in text_of(cell.get("source")).splitlines())))


# --- markdown structure ---------------------------------------------------------------------------

FENCE = re.compile(r"^(?P<tick>`{3,}|~{3,})(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=tick)[ \t]*$",
                   re.M | re.S)
SPANS = [  # (pattern, kind) applied in order to what is still prose
    (re.compile(r"<!--.*?-->", re.S), "drop"),
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), "drop"),
    (re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S), "code"),
    (re.compile(r"\$\$.+?\$\$", re.S), "math"),
    (re.compile(r"(?<![\\$\w])\$(?=\S)[^$\n]+?(?<=\S)\$(?!\w)"), "math"),
    (re.compile(r"<https?://[^>\s]+>"), "drop"),
    (re.compile(r"</?[A-Za-z][^>\n]*>"), "drop"),
]
LINK = re.compile(r"\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]*)(?:\s+\"[^\"]*\")?\)")
HEADING_NUMBER = re.compile(r"^#{1,6}[ \t]+(?:\w+[ \t]+)?(?P<n>\d+(?:\.\d+)*)", re.M)
LIST_LABEL = re.compile(r"^[ \t]*(?:[-*][ \t]+)?(?P<n>\d+)[.)][ \t]", re.M)
DATE = re.compile(r"\b(?:19|20)\d\d-[01]\d(?:-[0-3]\d)?\b")


@dataclass
class Markdown:
    text: str
    kinds: list[str]
    links: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, target)

    def kind(self, i: int) -> str:
        return self.kinds[i]

    def span_at(self, i: int) -> str:
        """The whole inline code or math span around position i."""
        kind = self.kinds[i]
        a = i
        while a > 0 and self.kinds[a - 1] == kind:
            a -= 1
        b = i
        while b < len(self.text) and self.kinds[b] == kind:
            b += 1
        return self.text[a:b]

    def plain(self) -> str:
        """The text with dropped parts blanked, positions kept."""
        return "".join(" " if k == "drop" else c for c, k in zip(self.text, self.kinds))


def read_markdown(text: str) -> Markdown:
    kinds = ["prose"] * len(text)

    def mark(a: int, b: int, kind: str) -> None:
        for i in range(a, b):
            kinds[i] = kind

    for m in FENCE.finditer(text):
        if m["info"].strip().startswith("{"):  # a MyST directive: prose inside, options dropped
            mark(m.start(), m.start("body"), "drop")
            mark(m.end("body"), m.end(), "drop")
            for option in re.finditer(r"^:[\w-]+:.*$", m["body"], re.M):
                mark(m.start("body") + option.start(), m.start("body") + option.end(), "drop")
        else:
            mark(m.start(), m.end(), "code")
    for pattern, kind in SPANS:
        for m in pattern.finditer(text):
            if all(k == "prose" for k in kinds[m.start():m.end()]):
                mark(m.start(), m.end(), kind)
    doc = Markdown(text, kinds)
    for m in LINK.finditer(text):
        if kinds[m.start()] in ("prose",):
            mark(m.start("target") - 2, m.end(), "drop")
            doc.links.append((m.start(), m.end(), m["target"]))
    return doc


def numbers_of(doc: Markdown) -> list[Num]:
    found = []
    for m in NUMBER.finditer(doc.text):
        if doc.kind(m.start()) == "drop":
            continue
        value, quantum, integer = parse(m)
        found.append(Num(m.group(), m.start(), m.end(), value, quantum, doc.kind(m.start()),
                         integer=integer))
    return found


# --- the rules ------------------------------------------------------------------------------------

REF_WORD = (r"(?:chapters?|ch\.?|sections?|§|cells?|exercises?|figures?|fig\.|tables?|steps?|"
            r"layers?|heads?|epochs?|appendix|parts?|lines?|rows?|columns?|items?|issues?|bytes?|"
            r"features?|dimensions?|indices|index|"
            r"positions?|blocks?|pages?|equations?|eq\.|rungs?|#)")
REFERENCE = re.compile(REF_WORD + r"[ \t]*(?:[\d.]+[ \t]*(?:,|and|or|to|–|-|through|&)?[ \t]*)*\Z", re.I)
YEAR_BEFORE = re.compile(r"(?:\(|\bsince\s|et al\.?,?\s*|[A-Z][A-Za-z]+,\s*|\b(?:Jan|Feb|Mar|Apr|May|"
                         r"Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?\s+(?:\d{1,2},?\s+)?)\Z")
VERSIONED = re.compile(r"(?:Python|torch|PyTorch|transformers|Jupyter Book|Sphinx|selenium|"
                       r"ipykernel|nbval|peft|numpy|CUDA|jupytext|glibc|MKL)\s*(?:==|>=)?\s*\Z", re.I)
SOURCE = re.compile(r"GPT-2 paper|GPT-3 paper|the paper\b|Radford et al|Brown et al|Vaswani et al|"
                    r"Sennrich et al|Kaplan et al|Hoffmann et al|Chinchilla|rasbt|Raschka|nanoGPT|"
                    r"llm\.c|Karpathy|Hugging Face|OpenAI (?:reports|published|measured)|\bdata ?sheet\b", re.I)
CITED_FILE = re.compile(r"\b(?:benchmarks/[\w.-]+\.(?:json|log|txt)|data/README\.md)\b")
CHAPTER_NAMED = re.compile(r"\b[Cc]hapters?[ -](\d+)((?:\s*(?:,|and|or|to|–)\s*\d+)*)"
                           r"|\b(\d\d)_\w+\.ipynb|§\s?(\d+)\.|\b[Aa]ppendix ([A-Z])\b")
CLAUSE_END = re.compile(r"[.!?](?=\s)|;|—|:\s|\n\s*\n")
OPERATOR = re.compile(r"^\s*(?:[A-Za-z]+\s+){0,2}(?P<op>[×*·/÷+^]|\\times|\\cdot|x(?=\s)|−(?=\s)|-(?=\s))\s*\Z")
RELATION = re.compile(r"^\s*(?:[A-Za-z%]+\s+){0,2}(?P<rel>=|≈|\bis\b|\bequals\b|\bgives\b)\s*"
                      r"(?:about\s+|roughly\s+)?\Z")


def clause_bounds(text: str, i: int) -> tuple[int, int]:
    starts = [m.end() for m in CLAUSE_END.finditer(text, 0, i)]
    after = CLAUSE_END.search(text, i)
    return (starts[-1] if starts else 0), (after.start() if after else len(text))


def sentence_bounds(text: str, i: int) -> tuple[int, int]:
    ends = re.compile(r"[.!?](?=\s)|\n\s*\n")
    starts = [m.end() for m in ends.finditer(text, 0, i)]
    after = ends.search(text, i)
    return (starts[-1] if starts else 0), (after.start() if after else len(text))


def classify_form(num: Num, text: str) -> str | None:
    """name / reference / year, from the characters around the number; sets percent/scale/unit."""
    s, e = num.start, num.end
    before, after = text[max(0, s - 40):s], text[e:e + 40]
    if re.match(r"[A-Z]\.\Z", before[-2:]):  # A.4: a section of the appendix
        return "reference"
    if before[-1:].isalnum() or before[-1:] == "_" or re.search(r"[A-Za-z][-‑.]\Z|\d\.\Z", before):
        return "name"
    if re.match(r"\.\d", after) or re.match(r"_", after):
        return "name"
    word = re.match(r"[A-Za-zµ]+", after)
    if word:
        w = word.group()
        if w in SCALE:
            num.scale = SCALE[w]
        elif w.lower() in ORDINAL:
            return "reference"
        elif w in UNITS:
            num.unit = True
        else:
            return "name"
    if (byte_unit := re.match(r"\s?([kKMGT])B\b", after)) is not None:  # 154 MB == 154e6 bytes
        num.scale = {"k": 3, "K": 3, "M": 6, "G": 9, "T": 12}[byte_unit[1]]
    if MODEL_SIZE.match(text, s):  # GPT-2's sizes as OpenAI and Hugging Face name them
        return "name"
    if VERSIONED.search(before) and not num.integer:
        return "name"
    if after.startswith("%") or re.match(r"\s?(?:%|percent)", after):
        num.percent = True
    if (scale := WORD_SCALE.match(after)) is not None:
        num.scale = {"k": 3, "M": 6, "B": 9}[scale.lastgroup]
    if num.integer and APPROX.search(before):  # about 400: the trailing zeros are not digits shown
        digits = num.text.replace(",", "").replace("{,}", "")
        num.quantum = Decimal(1).scaleb(len(digits) - len(digits.rstrip("0")))
    if UNIT_WORD.match(after) and UNIT_WORD.match(after).group().strip() or before.endswith("×"):
        num.unit = True
    line_start = text.rfind("\n", 0, s) + 1
    for pattern in (HEADING_NUMBER, LIST_LABEL):
        m = pattern.match(text, line_start)
        if m and m.start("n") <= s < m.end("n"):
            return "reference"
    if REFERENCE.search(" ".join(text[max(0, s - 60):s].split("\n"))):
        return "reference"
    if any(d.start() <= s < d.end() for d in DATE.finditer(text, max(0, s - 10), e + 10)):
        return "year"
    if num.integer and 1900 <= num.value <= 2099 and "," not in num.text and (
            YEAR_BEFORE.search(before) or re.match(r"\)|,\s|\.(?!\d)|-[01]\d", after)
            and re.search(r"\b(?:in|of|since|from|until)\s+$", before)):
        return "year"
    if num.integer and num.value <= 10 and not (num.percent or num.scale or num.unit):
        return "small"
    return None


def arithmetic_chains(nums: list[Num], text: str) -> tuple[set[int], list[tuple[Num, str]]]:
    """Indices of numbers in spelled-out arithmetic, and the chains whose arithmetic fails."""
    inside: set[int] = set()
    failures: list[tuple[Num, str]] = []
    i = 0
    while i < len(nums) - 1:
        chain, links = [i], []
        j = i
        while j < len(nums) - 1:
            between = text[nums[j].end:nums[j + 1].start]
            if "\n\n" in between:
                break
            op, rel = OPERATOR.match(between), RELATION.match(between)
            if not (op or rel):
                break
            links.append(op["op"] if op else "=" if rel["rel"] != "≈" else "≈")
            chain.append(j + 1)
            j += 1
        if any(link not in ("=", "≈") for link in links) and any(l in ("=", "≈") for l in links):
            inside.update(chain)
            # Part of a longer formula (a bracket or an operator around the chain): not evaluated.
            whole = not (re.search(r"[-−(×*/+^÷)]\s*\Z", text[max(0, nums[i].start - 3):nums[i].start])
                         or re.match(r"\s*[(×*/+^÷)]", text[nums[j].end:]))
            problem = whole and check_chain([nums[k] for k in chain], links)
            if problem:
                failures.append((nums[chain[0]], problem))
            i = j + 1
        else:
            i += 1
    return inside, failures


def check_chain(nums: list[Num], links: list[str]) -> str | None:
    """Evaluate `a op b rel c ...`; say so when the sides disagree beyond the digits shown."""
    sides: list[tuple[str, list[Num]]] = [("", [nums[0]])]
    ops: list[list[str]] = [[]]
    for link, num in zip(links, nums[1:]):
        if link in ("=", "≈"):
            sides.append((link, [num]))
            ops.append([])
        else:
            sides[-1][1].append(num)
            ops[-1].append({"×": "*", "x": "*", "·": "*", "\\times": "*", "\\cdot": "*",
                            "÷": "/", "^": "**", "−": "-"}.get(link, link))
    values = []
    for (rel, side), side_ops in zip(sides, ops):
        expression = str(side[0].value.scaleb(side[0].scale)) + "".join(
            f" {o} {n.value.scaleb(n.scale)}" for o, n in zip(side_ops, side[1:]))
        try:
            if "**" in expression and abs(max((n.value for n in side), key=abs)) > 1000:
                return None  # a power this large is not arithmetic to check by evaluating it
            value = eval(compile(ast.parse(expression, mode="eval"), "<prose>", "eval"), {})
        except (ArithmeticError, SyntaxError, TypeError, ValueError):
            return None
        quantum = side[0].quantum.scaleb(side[0].scale) if len(side) == 1 else 0
        values.append((rel, float(value), float(quantum)))
    shown = " ".join(n.text for n in nums)
    for (_, a, qa), (rel, b, qb) in zip(values, values[1:]):
        tolerance = max(qa, qb) / 2 * (1 + 1e-9) + 1e-12 * max(abs(a), abs(b))
        if rel == "≈":
            tolerance = max(tolerance, 0.05 * max(abs(a), abs(b)))
        if abs(a - b) > tolerance:
            return f"arithmetic does not hold: {shown} ({a:g} vs {b:g})"
    return None


# --- checking one document ------------------------------------------------------------------------


@dataclass
class Finding:
    where: str
    cell: int | None
    number: str
    snippet: str
    message: str = "not in the outputs"

    def __str__(self) -> str:
        at = f"{self.where} cell {self.cell}" if self.cell is not None else self.where
        return f"{at}: {self.number} {self.message}: \"{self.snippet}\""


@dataclass
class Report:
    where: str
    counts: Counter = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    exempted: list[tuple[int | None, Num]] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        rules = ", ".join(f"{r} {c[r]}" for r in RULES)
        return (f"{self.where}: {c['checked']} numbers, {c['matched']} matched"
                f" (+{c['cited']} in a cited chapter or file); exempt: {rules}; "
                f"{len(self.findings)} unmatched")


def snippet(text: str, num: Num) -> str:
    """Up to 50 characters either side of the number, within its paragraph."""
    start = text.rfind("\n\n", 0, num.start)
    end = text.find("\n\n", num.end)
    a = max(num.start - 50, start + 2 if start >= 0 else 0)
    b = min(num.end + 50, end if end >= 0 else len(text))
    return " ".join(text[a:b].split())


def check_text(text: str, where: str, cell: int | None, report: Report, own: Pool,
               literals: Pool, chapter_pools: dict[str, Pool], file_pool) -> None:
    doc = read_markdown(text)
    plain = doc.plain()
    nums = numbers_of(doc)
    forms = [classify_form(num, plain) for num in nums]  # also reads units, scales, percent
    in_arithmetic, failures = arithmetic_chains(nums, plain)
    for num, problem in failures:
        report.findings.append(Finding(where, cell, num.text, snippet(plain, num), problem))
    web_links = [(a, b) for a, b, target in doc.links if re.match(r"https?://", target)]
    for index, num in enumerate(nums):
        report.counts["checked"] += 1
        num.rule = forms[index]
        if num.rule == "name" and num.kind == "math":  # 12C^2: a term of a formula
            num.rule = "inline code/math"
        if num.rule is None and any(own.has(v, q) for v, q in num.candidates()):
            num.rule = "matched"
        if num.rule is None:
            num.rule = cited(num, plain, doc.links, chapter_pools, file_pool)
        a, b = clause_bounds(plain, num.start)
        if num.rule is None and any(float(num.value) == value and re.search(words, plain[a:b], re.I)
                                    for value, words, _why in ALLOWLIST):
            num.rule = "allowlist"
        if num.rule is None and literals.exact(float(num.value) / (100 if num.percent else 1)):
            num.rule = "code"
        if num.rule is None and index in in_arithmetic:
            num.rule = "arithmetic"
        if num.rule is None and (
                any(a <= la < b and min(abs(la - num.end), abs(lb - num.start)) <= 80
                    for la, lb in web_links)
                or any(min(abs(m.start() - num.end), abs(m.end() - num.start)) <= 80
                       for m in SOURCE.finditer(plain, a, b))):
            num.rule = "citation"
        if num.rule is None and num.kind in ("code", "math"):
            span = doc.span_at(num.start).strip("`$ ")
            if not re.fullmatch(r"[-−+]?[\d.,]+(?:[eE][-−+]?\d+)?\s*%?", span):
                num.rule = "inline code/math"
        if num.rule is None:
            report.findings.append(Finding(where, cell, num.text, snippet(plain, num)))
        else:
            report.counts[num.rule] += 1
            if num.rule not in ("matched", "cited"):
                report.exempted.append((cell, num))


def cited(num: Num, plain: str, links: list[tuple[int, int, str]], chapter_pools: dict[str, Pool],
          file_pool) -> str | None:
    """"cited" when the sentence names (or links) a chapter whose outputs show the number, or when
    the clause names a committed benchmarks file (or data/README.md) that holds it."""
    a, b = sentence_bounds(plain, num.start)
    labels = []
    for m in CHAPTER_NAMED.finditer(plain, a, b):
        labels += [m[1], *re.findall(r"\d+", m[2] or "")] if m[1] else [m[3] or m[4] or m[5]]
    for start, _end, target in links:
        linked = re.match(r"(?:\./)?(\d\d|[A-Z])_\w+\.ipynb", target)
        if a <= start < b and linked:
            labels.append(linked[1])
    for name in labels:
        pool = chapter_pools.get(name.lstrip("0") or "0") if name.isdigit() else chapter_pools.get(name)
        if pool and any(pool.has(v, q) for v, q in num.candidates()):
            return "cited"
    ca, cb = clause_bounds(plain, num.start)
    files = [m.group() for m in CITED_FILE.finditer(plain, ca, cb)]
    files += [m.group() for start, _end, target in links
              if ca <= start < cb and (m := CITED_FILE.search(target))]
    for relative in files:
        pool = file_pool(relative)
        if pool and any(pool.has(v, q) for v, q in num.candidates()):
            return "cited"
    return None


class Book:
    """Pools of numbers shared by every document: each chapter's outputs, cited files."""

    def __init__(self, notebooks: list[Path]):
        self.cells = {Path(nb).resolve(): load_cells(nb) for nb in notebooks}
        self.pools = {label(nb): outputs_pool(cells) for nb, cells in self.cells.items()}
        self.files: dict[str, Pool | None] = {}

    def file_pool(self, relative: str) -> Pool | None:
        if relative not in self.files:
            path = ROOT / relative
            self.files[relative] = (Pool(output_numbers(path.read_text(encoding="utf-8")))
                                    if path.is_file() else None)
        return self.files[relative]

    def check_notebook(self, path: Path) -> Report:
        path = Path(path).resolve()
        cells = self.cells[path] if path in self.cells else load_cells(path)
        report = Report(path.name)
        own, literals = outputs_pool(cells), code_literals(cells)
        for index, cell in enumerate(cells):
            if cell.get("cell_type") == "markdown":
                check_text(text_of(cell.get("source")), path.name, index, report, own, literals,
                           self.pools, self.file_pool)
        return report


# --- README.md against the record of its runs -----------------------------------------------------

TABLE_ROW = re.compile(r"^\|\s*(?P<label>\w+)\s*\|\s*`(?P<stem>\w+)`\s*\|(?P<rest>.*)$", re.M)


def read_minutes(cells: list[dict]) -> int:
    """The README's reading estimate: words of prose and lines of code, rounded to 5 minutes."""
    words = lines = 0
    for cell in cells:
        source = text_of(cell.get("source"))
        if cell.get("cell_type") == "markdown":
            words += len(source.split())
        elif cell.get("cell_type") == "code":
            lines += sum(1 for line in source.splitlines()
                         if line.strip() and not line.lstrip().startswith(("#|", "# NBVAL_")))
    return 5 * math.floor((words / READ_WORDS + lines / READ_CODE_LINES) / 5 + 0.5)


def check_readme(book: Book, readme: Path = README, runs: Path = RUNS) -> Report:
    report = Report(readme.name)
    if not runs.is_file():
        report.findings.append(Finding(readme.name, None, "-", runs.name,
                                       "the record of the README's runs is missing"))
        return report
    record = json.loads(runs.read_text(encoding="utf-8"))
    pool = Pool(output_numbers(runs.read_text(encoding="utf-8")) + [READ_WORDS, READ_CODE_LINES])
    text = readme.read_text(encoding="utf-8")
    by_stem = {nb.stem: cells for nb, cells in book.cells.items()}
    chapter_seconds = record.get("make_test", {}).get("chapter_seconds", {})
    masked = list(text)
    for m in TABLE_ROW.finditer(text):
        if m["stem"] not in by_stem:
            continue
        bars = [i for i in range(m.start(), m.end()) if text[i] == "|"]
        cells = list(zip(bars, bars[1:]))  # (start, end) of each cell, between two bars
        label_cell, read_cell, run_cell = cells[0], cells[-3], cells[-2]
        report.counts["checked"] += 1
        report.counts["reference"] += 1  # the chapter's label in the first column
        want = {read_cell: (f"{read_minutes(by_stem[m['stem']])} min", "read estimate"),
                run_cell: (f"{chapter_seconds.get(m['stem'])} s", "run (quick) in benchmarks/runs.json")}
        for (a, b), (expected, what) in want.items():
            report.counts["checked"] += 1
            shown = text[a + 1:b].strip()
            if shown == expected:
                report.counts["matched"] += 1
            else:
                report.findings.append(Finding(readme.name, None, shown, f"row {m['label']}, {m['stem']}",
                                               f"is not the {what} ({expected})"))
        for a, b in (label_cell, read_cell, run_cell):  # the rest of the row is checked as prose
            masked[a + 1:b] = " " * (b - a - 1)
    # Everything else: checked as prose against the record and the chapters a sentence names.
    check_text("".join(masked), readme.name, None, report, pool, Pool(), book.pools, book.file_pool)
    return report


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter, then README.md")
    parser.add_argument("--readme", action="store_true", help="check README.md only")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every exempted number")
    args = parser.parse_args(argv)
    book = Book(chapter_notebooks())
    targets = [] if args.readme else [Path(p).resolve() for p in args.notebooks] or chapter_notebooks()
    reports = [book.check_notebook(path) for path in targets]
    if args.readme or not args.notebooks:
        reports.append(check_readme(book))
    for report in reports:
        for finding in report.findings:
            print(finding)
        if args.verbose:
            for cell, num in report.exempted:
                print(f"  {report.where} cell {cell}: {num.text} exempt ({num.rule})")
    for report in reports:
        print(report.summary())
    unmatched = sum(len(r.findings) for r in reports)
    if unmatched:
        print(f"\nprose_numbers: {unmatched} number(s) not found in the outputs they describe; "
              "quote the output, make a timing a ratio or qualitative, or cite the source "
              "(CONTRIBUTING.md, house style 7)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
