"""tools/prose_numbers.py on small synthetic notebooks: normalisation, each exemption rule, and the
numbers each rule must still catch."""
from __future__ import annotations

import json
from pathlib import Path

import prose_numbers as pn
import pytest


def md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def code(text: str, *printed: str, html: str | None = None) -> dict:
    outputs = [{"output_type": "stream", "name": "stdout", "text": p} for p in printed]
    if html:
        outputs.append({"output_type": "execute_result", "execution_count": 1, "metadata": {},
                        "data": {"text/html": html, "text/plain": "<table>"}})
    return {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": outputs,
            "source": text}


def notebook(tmp_path: Path, cells: list[dict], name: str = "03_demo.ipynb") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
                    encoding="utf-8")
    return path


def check(tmp_path: Path, prose: str, *printed: str, source: str = "x = 1", others=()) -> pn.Report:
    """The report for one markdown cell (index 1) after one code cell that printed `printed`."""
    path = notebook(tmp_path, [code(source, *printed), md(prose)])
    return pn.Book([*others, path]).check_notebook(path)


def unmatched(report: pn.Report) -> list[str]:
    return [f.number for f in report.findings]


def rules(report: pn.Report) -> dict[str, int]:
    return {rule: report.counts[rule] for rule in (*pn.RULES, "matched", "cited") if report.counts[rule]}


# --- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize("prose, printed", [
    ("The story has 5,145 tokens.", "tokens: 5145"),
    ("It has 5145 tokens.", "tokens: 5,145"),
    ("Validation ends at 6.4.", "val 6.405"),
    ("Validation ends at 6.41.", "val 6.405"),
    ("The matmuls take 54% of the time.", "matmuls 54.3%"),
    ("The matmuls take 54% of the time.", "matmuls share 0.5432"),
    ("The matmuls take 54.3% of the time.", "matmuls share 0.5432"),
    ("The bound is 1e-6 here.", "max |diff| < 1.0e-06"),
    ("The bound is $10^{-6}$ here.", "max |diff| < 1e-06"),
    ("The bound is 10⁻⁶ here.", "max |diff| < 1e-06"),
    ("The error is 1.3e-15 here.", "error 1.30e-15"),
    ("The gradient moves by −0.25 there.", "delta -0.25"),
    ("Compiled, ours is 1.57× faster.", "ours/HF x1.57"),
    ("Compiled, ours is ×1.57 faster.", "ours/HF 1.57"),
    ("It reaches 301k tokens per second.", "tok/s 301,082"),
    ("It is 5.5 million times smaller.", "ratio 5.5e+06"),
    ("Each step maps about 400 MiB anew.", "417 MiB"),
    ("The loss falls by 2.1 in one epoch.", "change -2.1"),
])
def test_normalised_numbers_match(tmp_path, prose, printed):
    report = check(tmp_path, prose, printed)
    assert unmatched(report) == [], prose
    assert report.counts["matched"] == report.counts["checked"] >= 1


@pytest.mark.parametrize("prose, printed", [
    ("Validation ends at 6.405.", "val 6.4"),  # the prose claims digits the output does not print
    ("Validation ends at 6.3.", "val 6.405"),
    ("The matmuls take 55% of the time.", "matmuls 54.3%"),
    ("It has 5,146 tokens.", "tokens: 5145"),
    ("The error is 1.3e-15 here.", "error 1.5e-15"),
    ("Each step maps 400 MiB anew.", "417 MiB"),  # without "about", 400 is exact
    ("Compiled, ours is 1.2× faster.", "ours/HF x1.57"),
])
def test_numbers_the_outputs_contradict_are_reported(tmp_path, prose, printed):
    report = check(tmp_path, prose, printed)
    assert len(unmatched(report)) == 1, prose
    finding = str(report.findings[0])
    assert finding.startswith("03_demo.ipynb cell 1: ") and "not in the outputs" in finding


def test_html_tables_count_as_outputs(tmp_path):
    path = notebook(tmp_path, [code("df", html="<table><tr><td>0.069</td><td>1,130</td></tr></table>"),
                               md("The best score is 0.069, and there are 1,130 words.")])
    report = pn.Book([path]).check_notebook(path)
    assert unmatched(report) == [] and report.counts["matched"] == 2


def test_the_issue_chapter_11_profile_prose_is_caught(tmp_path):
    printed = ("  weight matmuls   71.6%\n  other   6.5%\n  attention   5.7%\n  dropout masks   5.1%\n"
               "  copies and fills   3.5%\n  AdamW   2.9%\n  loss over 50,257 logits   2.3%\n")
    prose = ("13.7% in adds, multiplies and sums, 8.6% in copies and fills, 8.3% in attention, "
             "3.6% drawing dropout masks, and only 1.7% in the loss over the 50,257 logits.")
    assert unmatched(check(tmp_path, prose, printed)) == ["13.7", "8.6", "8.3", "3.6", "1.7"]


# --- exemptions, one rule at a time -------------------------------------------------------------


def test_names_and_versions_are_not_numbers(tmp_path):
    prose = ("GPT-2 runs in fp32 or bf16 on an H200 with AVX-512; see `01_tokenizer`, "
             "Jupyter Book 1.0.4, Python 3.10 and the 124M model, on 127.0.0.1.")
    report = check(tmp_path, prose, "nothing")
    assert unmatched(report) == []
    assert rules(report) == {"name": report.counts["checked"]}


def test_references_are_exempt(tmp_path):
    prose = ("## 5.3 Training\n\nAs section 5.3 and chapters 7-10 show (exercise 12, cell 42, "
             "layer 11, head 9, epoch 13, features 64–127), the 4th step differs.\n\n"
             "12. A list item.")
    report = check(tmp_path, prose, "nothing")
    assert unmatched(report) == []
    assert rules(report) == {"reference": report.counts["checked"]}


def test_years_need_a_date_like_context(tmp_path):
    report = check(tmp_path, "The Verdict (1908, public domain); BPE (Sennrich et al., 2016, after "
                   "Gage, 1994); MFU (PaLM, 2022); run on 2026-11-27.", "nothing")
    assert unmatched(report) == [] and report.counts["year"] == 7  # 2026, 11 and 27 of the date
    assert unmatched(check(tmp_path, "It trains on 2048 tokens.", "nothing")) == ["2048"]


def test_small_integers_are_exempt_but_not_with_a_unit(tmp_path):
    report = check(tmp_path, "It has 4 layers, 2 heads and 10 blocks.", "nothing")
    assert unmatched(report) == [] and report.counts["small"] == 3
    assert unmatched(check(tmp_path, "It is 3× faster and takes 7 s and 5% more.", "nothing")) == [
        "3", "7", "5"]


def test_literals_of_the_chapters_own_code_are_exempt(tmp_path):
    source = ("lr = 4e-4\nd_model = 768\nvocab = 50_257\nsplit = 0.9\n"
              "print(f'MFU = {mfu(400_000, 790e12):.1%}')")
    prose = "AdamW at 4e-4, width 768, 50,257 tokens, a 90% split, and 400,000 tokens/s."
    report = check(tmp_path, prose, "nothing", source=source)
    assert unmatched(report) == [] and report.counts["code"] == 5
    assert unmatched(check(tmp_path, "Width 769.", "nothing", source=source)) == ["769"]


def test_arithmetic_the_sentence_spells_out_is_checked_and_exempt(tmp_path):
    prose = ("Each head has 768 / 12 = 64 features, 50,304 = 393 × 128 is a round number, "
             "the head is 50,257 × 768 × 4 bytes = 154 MB, and a list of 100 million × 36 bytes "
             "= 3.6 GB; 6.399 / 1.790 ≈ 3.6.")
    report = check(tmp_path, prose, "nothing")
    assert unmatched(report) == []
    assert report.counts["arithmetic"] == report.counts["checked"] - report.counts["small"]
    wrong = check(tmp_path, "There are 12 × 64 = 769 features.", "nothing")
    assert [f.message for f in wrong.findings] == [
        "arithmetic does not hold: 12 64 769 (768 vs 769)"]


def test_a_citation_exempts_the_numbers_next_to_it_only(tmp_path):
    prose = ("WebText holds 40 GB of pages (the GPT-2 paper); an H100 reaches 990 TFLOP/s by "
             "NVIDIA's data sheet; [a post](https://example.org/post) reports 35.13. "
             "Ours reaches 17.2.")
    report = check(tmp_path, prose, "nothing")
    assert report.counts["citation"] == 3
    assert unmatched(report) == ["17.2"]
    far = ("The GPT-2 paper trained on WebText, a large scrape of outbound links from a social site "
           "that was filtered by karma; our model, in contrast, reaches 17.2.")
    assert unmatched(check(tmp_path, far, "nothing")) == ["17.2"]


def test_a_sentence_naming_another_chapter_is_checked_against_its_outputs(tmp_path):
    other = notebook(tmp_path, [code("x", "val 6.405")], name="05_demo.ipynb")
    named = check(tmp_path, "Chapter 5 ended at 6.405.", "nothing", others=[other])
    assert unmatched(named) == [] and named.counts["cited"] == 1
    linked = check(tmp_path, "[The run](05_demo.ipynb) ended at 6.405.", "nothing", others=[other])
    assert linked.counts["cited"] == 1
    assert unmatched(check(tmp_path, "It ended at 6.405.", "nothing", others=[other])) == ["6.405"]
    assert unmatched(check(tmp_path, "Chapter 5 ended at 6.5.", "nothing", others=[other])) == ["6.5"]


def test_a_committed_benchmark_file_is_checked_when_cited(tmp_path):
    record = json.loads((pn.ROOT / "benchmarks" / "train_cpu.json").read_text())
    share = f"{record['results']['ours']['mfu']:.1%}"  # the figure the file holds, as prose
    report = check(tmp_path, f"Ours reached {share} (`benchmarks/train_cpu.json`).", "nothing")
    assert unmatched(report) == [] and report.counts["cited"] == 1
    assert unmatched(check(tmp_path, "Ours reached 12.3% (`benchmarks/train_cpu.json`).",
                           "nothing")) == ["12.3"]


def test_inline_code_and_math_definitions_are_exempt_but_not_bare_numbers(tmp_path):
    report = check(tmp_path, "Call `GPT2Config(n_embd=769)` with $\\sqrt{77}$ and $12C^2 + 13C$.",
                   "nothing")
    assert unmatched(report) == [] and report.counts["inline code/math"] == 4
    assert unmatched(check(tmp_path, "The loss is `4.137`.", "loss 4.2")) == ["4.137"]


def test_the_allowlist_needs_its_words(tmp_path):
    report = check(tmp_path, "float32 keeps 24 significand bits.", "nothing")
    assert unmatched(report) == [] and report.counts["allowlist"] == 1
    assert unmatched(check(tmp_path, "It took 24 minutes.", "nothing")) == ["24"]


def test_fenced_code_is_code_and_directive_fences_are_prose(tmp_path):
    prose = ("```bash\npython -m gpt2scratch train --max-length 33\n```\n\n"
             "```{admonition} Solution\n:class: dropdown\nIt keeps 41 tokens.\n```")
    report = check(tmp_path, prose, "nothing")
    assert unmatched(report) == ["41"]
    assert report.counts["inline code/math"] == 1


# --- the command line and the README ------------------------------------------------------------


def test_main_prints_findings_and_a_summary_and_fails(tmp_path, capsys):
    path = notebook(tmp_path, [code("x", "val 6.405"), md("It ended at 6.405, not 7.25.")])
    assert pn.main([str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == '03_demo.ipynb cell 1: 7.25 not in the outputs: "It ended at 6.405, not 7.25."'
    assert out[1].startswith("03_demo.ipynb: 2 numbers, 1 matched") and out[1].endswith("1 unmatched")
    clean = notebook(tmp_path, [code("x", "val 6.405"), md("It ended at 6.405.")], name="04_ok.ipynb")
    assert pn.main([str(clean)]) == 0


def test_readme_is_checked_against_the_record_of_its_runs(tmp_path):
    chapter = notebook(tmp_path, [md(" ".join(["word"] * 2000)), code("x = 1\n" * 100, "ok")],
                       name="01_demo.ipynb")
    runs = tmp_path / "runs.json"
    runs.write_text(json.dumps({"make_run": {"minutes": 7.4},
                                "make_test": {"chapter_seconds": {"01_demo": 19}}}))
    readme = tmp_path / "README.md"

    def findings(text: str) -> list[str]:
        readme.write_text(text)
        return [str(f) for f in pn.check_readme(pn.Book([chapter]), readme, runs).findings]

    row = "| 1 | `01_demo` | a tokenizer | `tokenizer.py` | {read} min | {run} s | CPU |\n"
    assert pn.read_minutes(pn.load_cells(chapter)) == 15  # 2000 / 200 + 100 / 20
    assert findings("`make run` took 7.4 min.\n\n" + row.format(read=15, run=19)) == []
    assert findings("`make run` took 7.5 min.\n\n" + row.format(read=20, run=18)) == [
        'README.md: 20 min is not the read estimate (15 min): "row 1, 01_demo"',
        'README.md: 18 s is not the run (quick) in benchmarks/runs.json (19 s): "row 1, 01_demo"',
        'README.md: 7.5 not in the outputs: "`make run` took 7.5 min."',
    ]
    runs.unlink()
    assert findings("Anything.") == ["README.md: - the record of the README's runs is missing: "
                                     '"runs.json"']
