"""Tests for the tokenizer a reader trains and keeps (chapter 1): BPETokenizer's special tokens
(minbpe's rules), encode_batch / decode_batch (tiktoken's), save / load in minbpe's .model format
(gpt2scratch.tokenizer_io), and `python -m gpt2scratch tokenizer train`."""
from __future__ import annotations

import inspect
import textwrap

import pytest
from cli_run import run_main
from hypothesis import given, settings, strategies as st

from gpt2scratch import tokenizer_basics
from gpt2scratch.tokenizer_basics import ENDOFTEXT, BPETokenizer, train_bpe
from gpt2scratch.tokenizer_io import MODEL_VERSION

TEXT = textwrap.dedent(inspect.getsource(tokenizer_basics))  # a few thousand words of Python
SMALL = train_bpe(TEXT, 420)
UNSEEN = "Unseen: naïve café, 東京, 🤖!\n\n\tx = 3.14  # done\r\n"


def with_specials(*tokens: str, bpe: BPETokenizer = SMALL) -> BPETokenizer:
    return BPETokenizer(bpe.merges, bpe.pattern, {t: bpe.n_vocab + k for k, t in enumerate(tokens)})


# --- save and load -------------------------------------------------------------------------------

def test_save_then_load_gives_identical_ids(tmp_path):
    tok = with_specials(ENDOFTEXT, "<|pad|>")
    model, vocab = tok.save(tmp_path / "sub" / "code")
    assert (model.name, vocab.name) == ("code.model", "code.vocab")
    loaded = BPETokenizer.load(model)
    assert (loaded.merges, loaded.pattern, loaded.special_tokens) == (
        tok.merges, tok.pattern, tok.special_tokens)
    assert loaded.vocab == tok.vocab and loaded.n_vocab == 420 + 2
    for text in [TEXT, UNSEEN, f"a{ENDOFTEXT}b<|pad|>", ""]:
        ids = tok.encode(text, allowed_special="all")
        assert loaded.encode(text, allowed_special="all") == ids
        assert loaded.decode(ids) == text
    assert sorted(tmp_path.joinpath("sub").iterdir()) == [model, vocab]  # no temp files left


def test_the_top_level_api_loads_a_saved_tokenizer(tmp_path):  # as the README shows it
    import gpt2scratch

    model, _ = with_specials(ENDOFTEXT).save(tmp_path / "tok" / "tokenizer")
    loaded = gpt2scratch.BPETokenizer.load(model)
    assert "BPETokenizer" in gpt2scratch.__all__
    assert loaded.decode(loaded.encode(TEXT, allowed_special="all")) == TEXT


def test_the_model_file_is_minbpes_layout(tmp_path):
    tok = with_specials(ENDOFTEXT)
    model, _ = tok.save(tmp_path / "t")
    lines = model.read_text(encoding="utf-8").split("\n")
    merges = sorted(tok.merges.items(), key=lambda kv: kv[1])
    assert lines == [MODEL_VERSION, tok.pattern, "1", f"{ENDOFTEXT} 420",
                     *(f"{a} {b}" for (a, b), _ in merges), ""]
    # minbpe's own reader strips each line and splits it on whitespace; it reads the same.
    it = iter(model.read_text(encoding="utf-8").splitlines())
    assert next(it).strip() == "minbpe v1" and next(it).strip() == tok.pattern
    specials = dict(next(it).strip().split() for _ in range(int(next(it))))
    assert {t: int(i) for t, i in specials.items()} == tok.special_tokens
    assert {tuple(map(int, line.split())): 256 + k for k, line in enumerate(it)} == tok.merges


def test_the_vocab_file_shows_every_token_once(tmp_path):
    tok = with_specials(ENDOFTEXT)
    _, vocab = tok.save(tmp_path / "t")
    lines = vocab.read_text(encoding="utf-8").splitlines()
    assert len(lines) == tok.n_vocab
    assert lines[10] == r"[\u000a] 10"  # control characters escaped: one line per token
    assert lines[-1] == f"[{ENDOFTEXT}] 420"
    (a, b), i = max(tok.merges.items(), key=lambda kv: kv[1])
    shown = [tok.vocab[k].decode("utf-8", "replace") for k in (a, b, i)]
    assert lines[i] == f"[{shown[0]}][{shown[1]}] -> [{shown[2]}] {i}"


def test_a_file_as_minbpe_writes_it_loads(tmp_path):
    # minbpe 'v1': no special-token order, a pattern of its own, a trailing newline
    path = tmp_path / "m.model"
    path.write_text("minbpe v1\n(?s).+\n2\n<b> 259\n<a> 258\n97 98\n256 99\n", encoding="utf-8")
    tok = BPETokenizer.load(path)
    assert tok.merges == {(97, 98): 256, (256, 99): 257}
    assert tok.special_tokens == {"<b>": 259, "<a>": 258} and tok.pattern == "(?s).+"
    assert tok.encode("abc<a>abc", allowed_special="all") == [257, 258, 257]
    path.write_bytes(b"minbpe v1\r\n(?s).+\r\n0\r\n97 98")  # Windows line ends, no final newline
    assert BPETokenizer.load(path).merges == {(97, 98): 256}


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=200), st.integers(256, 300), st.sampled_from([None, r"(?s).+", r"\w+|\W"]),
       st.text(min_size=1, max_size=3))
def test_round_trip_on_any_text(tmp_path_factory, text, vocab_size, pattern, seed_text):
    bpe = train_bpe(text, vocab_size) if pattern is None else train_bpe(text, vocab_size, pattern)
    special = f"<|{seed_text.replace(chr(10), '').replace(chr(13), '') or 'x'}|>"
    tok = with_specials(special, bpe=bpe)
    loaded = BPETokenizer.load(tok.save(tmp_path_factory.mktemp("p") / "t")[0])
    probe = text + special + text[::-1]
    assert loaded.encode(probe, allowed_special="all") == tok.encode(probe, allowed_special="all")
    assert loaded.decode(tok.encode(probe, allowed_special="all")) == probe.encode(
        "utf-8", "surrogatepass").decode("utf-8", "replace")


@pytest.mark.parametrize("content, line, words", [
    (b"", 1, "expected 'minbpe v1'"),
    (b"sentencepiece\n", 1, "not a tokenizer .model file"),
    (b"minbpe v1\n\\w+\n", 3, "number of special tokens"),
    (b"minbpe v1\n\\w+\nthree\n", 3, "number of special tokens"),
    (b"minbpe v1\n\n0\n", 2, "pattern is empty"),
    (b"minbpe v1\n(\\w+\n0\n", 2, "is not valid"),
    (b"minbpe v1\n\\w+\n2\n<a> 256\n", 4, "ends before its 2 special tokens"),
    (b"minbpe v1\n\\w+\n1\n<a>\n", 4, "special token and its id"),
    (b"minbpe v1\n\\w+\n2\n<a> 256\n<a> 257\n", 5, "new special token"),
    (b"minbpe v1\n\\w+\n1\n<a> 300\n97 98\n", 4, "must follow the merges: 257"),
    (b"minbpe v1\n\\w+\n0\n97 98\n97 256\n97 258\n", 6, "ids below 258"),
    (b"minbpe v1\n\\w+\n0\n97 98\n97 98\n", 5, "new merge"),
    (b"minbpe v1\n\\w+\n0\n97 98\n\n", 5, "got ''"),
    (b"minbpe v1\n\\w+\n0\n97,98\n", 4, "got '97,98'"),
    (b"minbpe v1\n\\w+\n0\n-1 98\n", 4, "got '-1 98'"),
])
def test_a_bad_model_file_names_itself_and_the_line(tmp_path, content, line, words):
    path = tmp_path / "bad.model"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"bad.model, line {line}: .*{words}"):
        BPETokenizer.load(path)


def test_a_bad_path_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such tokenizer file: .*missing.model"):
        BPETokenizer.load(tmp_path / "missing.model")
    model, vocab = SMALL.save(tmp_path / "t")
    with pytest.raises(IsADirectoryError, match=r"is a folder; pass a .model file \(.*t.model here\)"):
        BPETokenizer.load(tmp_path)
    with pytest.raises(ValueError, match=r"t.vocab is not a .model file"):
        BPETokenizer.load(vocab)
    model.write_bytes(b"minbpe v1\n\xff\n0\n")
    with pytest.raises(ValueError, match=r"t.model is not a .model file: not UTF-8 \(byte 10\)"):
        BPETokenizer.load(model)


def test_save_refuses_what_the_format_cannot_hold_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        SMALL.save(tmp_path)
    with pytest.raises(ValueError, match="line break"):
        with_specials("<a\nb>").save(tmp_path / "t")
    with pytest.raises(ValueError, match="line break"):
        BPETokenizer({}, pattern="a|\n").save(tmp_path / "t")
    assert list(tmp_path.iterdir()) == []


# --- special tokens ------------------------------------------------------------------------------

def test_allowed_special_follows_minbpes_rules():
    tok = with_specials(ENDOFTEXT, "<|pad|>")
    eot, pad = 420, 421
    text = f"one{ENDOFTEXT}two<|pad|>"
    plain = tok.encode_ordinary(text)
    assert eot not in plain and pad not in plain
    assert tok.encode(text, allowed_special="all") == [
        *tok.encode_ordinary("one"), eot, *tok.encode_ordinary("two"), pad]
    assert tok.encode(text, allowed_special={"<|pad|>"}) == [*tok.encode_ordinary(f"one{ENDOFTEXT}two"), pad]
    assert tok.encode(text, allowed_special="none") == plain
    with pytest.raises(ValueError, match=f"contains the special token '{ENDOFTEXT}'"):
        tok.encode(text)  # "none_raise" is the default
    assert tok.encode("no specials here") == tok.encode_ordinary("no specials here")
    assert tok.decode(tok.encode(text, allowed_special="all")) == text


def test_a_special_token_that_starts_another_does_not_cut_it():
    tok = with_specials("<s>", "<s>>")
    assert tok.encode("a<s>>b<s>", allowed_special="all") == [
        *tok.encode_ordinary("a"), 421, *tok.encode_ordinary("b"), 420]


@pytest.mark.parametrize("allowed, error, words", [
    ("everything", ValueError, "'all', 'none', 'none_raise' or a set"),
    (3, TypeError, "'all', 'none', 'none_raise' or a set"),
    ({"<|nope|>"}, ValueError, r"names '<\|nope\|>', which are not special tokens"),
])
def test_a_bad_allowed_special_says_what_is_valid(allowed, error, words):
    with pytest.raises(error, match=words):
        with_specials(ENDOFTEXT).encode("x", allowed_special=allowed)


def test_register_special_tokens_takes_the_next_free_ids():
    tok = BPETokenizer(SMALL.merges)
    tok.register_special_tokens({"<b>": 421, "<a>": 420})  # any order
    tok.register_special_tokens({"<a>": 420})  # the same again: nothing new
    assert tok.special_tokens == {"<b>": 421, "<a>": 420} and tok.n_vocab == 422
    assert tok.decode([421, 420]) == "<b><a>"
    for bad, error, words in [
        ({"<c>": 500}, ValueError, r"next free ids \[422\]"),
        ({"<c>": 419}, ValueError, r"next free ids \[422\]"),
        ({"<a>": 422}, ValueError, "'<a>' is not a new special token"),
        ({"": 422}, ValueError, "is not a new special token"),
        ({"<c>": "422"}, TypeError, "the id of '<c>' must be an int"),
        ([("<c>", 422)], TypeError, "must be a dict of text -> id, got list"),
    ]:
        with pytest.raises(error, match=words):
            tok.register_special_tokens(bad)
    assert tok.n_vocab == 422  # a refused registration changes nothing
    with pytest.raises(ValueError, match="token id 422 is out of range"):
        tok.decode([422])


# --- batches -------------------------------------------------------------------------------------

def test_batches_equal_one_text_at_a_time():
    tok = with_specials(ENDOFTEXT)
    texts = [TEXT, UNSEEN, "", f"x{ENDOFTEXT}y"]
    batch = tok.encode_batch(texts, allowed_special="all")
    assert batch == [tok.encode(t, allowed_special="all") for t in texts]
    assert tok.decode_batch(batch) == [tok.decode(ids) for ids in batch] == texts
    assert tok.encode_batch([]) == [] and tok.decode_batch([]) == []
    with pytest.raises(ValueError, match="contains the special token"):
        tok.encode_batch(texts)
    with pytest.raises(TypeError, match="got a str: use encode"):
        tok.encode_batch("one text")
    with pytest.raises(TypeError, match="decode expects a sequence of token ids"):
        tok.decode_batch([1, 2])


# --- training on several texts -------------------------------------------------------------------

def test_train_bpe_on_several_texts_never_merges_across_them():
    joined = train_bpe("abcd", 300, pattern=r"(?s).+")
    apart = train_bpe(["ab", "cd"], 300, pattern=r"(?s).+")
    assert joined.decode([max(joined.merges.values())]) == "abcd"
    assert apart.merges == {(97, 98): 256, (99, 100): 257}  # then each text is one token
    assert apart.merges == train_bpe(iter(["ab", "cd"]), 300, pattern=r"(?s).+").merges
    assert train_bpe([TEXT], 300).merges == train_bpe(TEXT, 300).merges
    with pytest.raises(TypeError, match="holds a bytes"):
        train_bpe(["ok", b"no"], 300)
    with pytest.raises(TypeError, match="got int"):
        train_bpe(5, 300)


# --- the command line ----------------------------------------------------------------------------

def test_cli_trains_saves_and_the_files_load(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text(TEXT[: len(TEXT) // 2], encoding="utf-8")
    (data / "sub" / "b.md").write_text(TEXT[len(TEXT) // 2 :], encoding="utf-8")
    (data / "c.txt").write_bytes(b"\xff\xfe not utf-8")
    out = tmp_path / "tok"
    code, stdout, stderr = run_main(["tokenizer", "train", "--data", str(data), "--vocab-size", "400",
                                     "--out", str(out), "--special", ENDOFTEXT], capsys)
    assert code == 0, stderr
    assert "warning: skipped" in stderr and "c.txt is not UTF-8" in stderr
    assert "trained on 2 file(s)" in stdout and "401 tokens (256 bytes, 144 merges, 1 special)" in stdout
    assert f"wrote {out / 'tokenizer.model'}" in stdout and str(out / "tokenizer.vocab") in stdout
    tok = BPETokenizer.load(out / "tokenizer.model")
    assert tok.special_tokens == {ENDOFTEXT: 400}
    assert tok.merges == train_bpe([TEXT[: len(TEXT) // 2], TEXT[len(TEXT) // 2 :]], 400).merges
    # a single file works too, and a second run replaces the files
    code, stdout, _ = run_main(["tokenizer", "train", "--data", str(data / "a.txt"), "--vocab-size",
                                "300", "--out", str(out)], capsys)
    assert code == 0 and BPETokenizer.load(out / "tokenizer.model").n_vocab == 300


@pytest.mark.parametrize("argv, words", [
    (["--data", "{tmp}/nowhere", "--vocab-size", "300", "--out", "{tmp}/tok"], "no such file or folder"),
    (["--data", "{tmp}/a.txt", "--vocab-size", "100", "--out", "{tmp}/tok"], "--vocab-size must be >= 256, got 100"),
    (["--data", "{tmp}/a.txt", "--vocab-size", "300", "--out", "{tmp}/a.txt"], "is a file; give the name of a folder"),
    (["--data", "{tmp}/empty.txt", "--vocab-size", "300", "--out", "{tmp}/tok"], "the files are empty"),
    (["--data", "{tmp}/bin.txt", "--vocab-size", "300", "--out", "{tmp}/tok"], "none of the 1 files is UTF-8"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    (tmp_path / "a.txt").write_text("hello world", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, stderr = run_main(["tokenizer", "train", *argv], capsys)
    assert code == 2
    last = stderr.splitlines()[-1]  # after any "warning: skipped" line
    assert last.startswith("python -m gpt2scratch tokenizer train: error: ") and words in last
    assert "Traceback" not in stderr and not (tmp_path / "tok").exists()
