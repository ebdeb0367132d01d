"""The tokenizer file: lossless on real pages, loadable without tokenmill, with the special tokens fixed."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from tests.conftest import DATA, SHARED
from tokenizer.bpe import EOS_TOKEN, SPECIAL_TOKENS, encode_documents, eos_id, load_tokenizer, train_bpe

TRICKY = [
    "naïve café — “quotes” ‘single’ … ½ ™ \u00a0non-breaking\u2009thin",
    "emoji 👩‍👩‍👧‍👦 🇫🇷 🏳️‍🌈 and skin tones 👍🏽; CJK 日本語のテキスト 中文 한국어",
    "RTL עברית العربية; combining e\u0301 a\u0308; zero width\u200bspace\u200d",
    "BOM \ufeff; NUL \x00 and \x7f; lone surrogates cannot be UTF-8, so they are not here",
    "whitespace\t\ttabs\r\nCRLF\n\n\n   trailing   \u3000ideographic space",
    "numbers 1234567890 3.14159 -42 1,000,000 0x1F and code `x += 1; // don't`",
    "special token text <|endoftext|> <|user|> <|pad|> inside a page",
]


def _texts(path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["main_content"] for line in f]


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    texts = _texts(DATA / "wcxb-truth-fixtures.jsonl.gz")
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe(texts, vocab_size=2048).save(str(path))
    return str(path)


def test_special_tokens_come_first_in_a_fixed_order(tokenizer_file):
    tok = load_tokenizer(tokenizer_file)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.get_vocab_size() == 2048


def test_a_document_cannot_forge_a_special_token(tokenizer_file):
    """A page that contains the text "<|endoftext|>" is encoded as that text: the only EOS is the last."""
    tok = load_tokenizer(tokenizer_file)
    text = "before <|endoftext|> and <|user|> after"
    (ids,) = encode_documents(tok, [text], np.dtype(np.uint16))
    specials = set(range(len(SPECIAL_TOKENS)))
    assert ids[-1] == eos_id(tok) and not specials & set(ids[:-1].tolist())
    assert tok.decode(ids[:-1].tolist()) == text


def test_gpt4_split_keeps_digits_in_threes_and_words_apart(tokenizer_file):
    tok = load_tokenizer(tokenizer_file)
    pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str("I'll pay 1234567 dollars")]
    # byte-level symbols: Ġ is a space
    assert pieces == ["I", "'ll", "Ġpay", "Ġ", "123", "456", "7", "Ġdollars"]


def _roundtrip_failures(tokenizer_file: str, texts: list[str]) -> tuple[list[int], list[int]]:
    from transformers import PreTrainedTokenizerFast

    tok = load_tokenizer(tokenizer_file)
    hf = PreTrainedTokenizerFast(tokenizer_file=tokenizer_file, eos_token=EOS_TOKEN, pad_token="<|pad|>")
    ids = encode_documents(tok, texts, np.dtype(np.uint16))  # as tokenize encodes them, EOS last
    ours = [i for i, (t, x) in enumerate(zip(texts, ids, strict=True)) if tok.decode(x[:-1].tolist()) != t]
    theirs = [i for i, t in enumerate(texts) if hf.decode(hf.encode(t)) != t]
    return ours, theirs


def test_decode_of_encode_is_the_text_with_tokenizers_and_transformers(tokenizer_file):
    texts = TRICKY + _texts(DATA / "wcxb-truth-fixtures.jsonl.gz")
    assert _roundtrip_failures(tokenizer_file, texts) == ([], [])


@pytest.mark.slow
def test_decode_of_encode_is_the_text_on_every_dev_page(tokenizer_file):
    dev = SHARED / "extraction" / "wcxb-dev-truth.jsonl.gz"
    if not dev.exists():
        pytest.skip(f"{dev} is absent (the shared real-data folder is not checked out beside the repo)")
    texts = _texts(dev)
    assert len(texts) == 1358
    assert _roundtrip_failures(tokenizer_file, texts) == ([], [])
