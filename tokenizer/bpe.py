"""Byte-level BPE with HF tokenizers: the GPT-4 pre-tokenisation split, our special tokens, load, encode.

The saved `tokenizer.json` is a plain tokenizers file: it loads with `tokenizers.Tokenizer.from_file` and
with transformers' `PreTrainedTokenizerFast(tokenizer_file=...)`, and decode(encode(text)) == text for any
text, because every byte has a token and the decoder maps tokens back to bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
# The chat roles the finetuning stages format conversations with; reserved here so a pretrained model's
# vocabulary already has them (their embeddings are trained during finetuning).
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN, *CHAT_TOKENS)  # ids 0..5, in this order
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)

# GPT-4's (cl100k) split: contractions, words with one leading non-letter, numbers of at most three digits,
# punctuation runs, newlines, other whitespace. Merges never cross these pieces.
GPT4_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE with the GPT-4 split; the ByteLevel step only maps bytes to symbols."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT4_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Train on `texts` (consumed once, in batches: memory grows with distinct words, not with bytes)."""
    if vocab_size < MIN_VOCAB:
        raise ValueError(
            f"vocab_size must be at least {MIN_VOCAB} (256 bytes + {len(SPECIAL_TOKENS)} special tokens), "
            f"got {vocab_size}"
        )
    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(url: str) -> Tokenizer:
    """A tokenizer.json from a local path or any fsspec URL (s3://...); a UsageError if it is not one."""
    from pipeline.config import UsageError
    from pipeline.storage import read_bytes

    try:
        return Tokenizer.from_str(read_bytes(url).decode("utf-8"))
    except Exception as e:  # tokenizers raises a bare Exception on a bad file
        if isinstance(e, FileNotFoundError):
            raise
        raise UsageError(f"{url} is not a tokenizers JSON file ({str(e).splitlines()[0][:200]})") from None


def eos_id(tokenizer: Tokenizer) -> int:
    token_id = tokenizer.token_to_id(EOS_TOKEN)
    if token_id is None:
        raise ValueError(f"tokenizer has no {EOS_TOKEN} token")
    return token_id


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """The special tokens this tokenizer has, by name (a tokenizer from elsewhere may lack some)."""
    return {t: i for t in SPECIAL_TOKENS if (i := tokenizer.token_to_id(t)) is not None}


def encode_documents(tokenizer: Tokenizer, texts: list[str], dtype: np.dtype) -> Iterator[np.ndarray]:
    """Encode a batch of documents (in parallel, inside tokenizers) with EOS appended to each.

    A special token's text inside a document ("<|endoftext|>" on a web page) is encoded as plain text, never
    as the special token: documents cannot forge an EOS or a chat turn. (The setting is not saved in
    tokenizer.json, so it is set here, on every call.)
    """
    tokenizer.encode_special_tokens = True
    eos = eos_id(tokenizer)
    for enc in tokenizer.encode_batch_fast(texts, add_special_tokens=False):
        ids = np.empty(len(enc.ids) + 1, dtype=dtype)
        ids[:-1] = enc.ids
        ids[-1] = eos
        yield ids
