"""Text in, text out from a pretrain run folder (RUN/ckpt.pt + RUN/tokenizer.json): nothing else is needed.

RUN may be a URL (s3://...): its two files are downloaded to the cache first, once per version.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import torch
from tokenizers import Tokenizer

from model import GPT
from model.sampling import generate_tokens
from pipeline import storage
from pipeline.config import UsageError
from tokenizer.bpe import load_tokenizer
from tokenizer.shards import TOKENIZER_FILE
from train.checkpoint import CKPT_FILE, load_checkpoint, model_from_checkpoint
from train.pretrain import resolve_device
from train.remote import RunFolder


def local_run(
    run_dir: str, cache_dir: str | None, files: tuple[str, ...] = (CKPT_FILE, TOKENIZER_FILE)
) -> str:
    """A local run folder: run_dir itself (or the folder of its ckpt.pt), or a copy of `files` of a remote
    one."""
    if storage.is_local(run_dir):
        return (os.path.dirname(run_dir) or ".") if os.path.isfile(run_dir) else run_dir
    if run_dir.rstrip("/").endswith(f"/{CKPT_FILE}"):
        run_dir = run_dir.rstrip("/")[: -len(CKPT_FILE) - 1]
    run = RunFolder(run_dir, cache_dir)
    missing = run.pull(*files)
    if missing:
        raise UsageError(
            f"no {missing[0]} in {run.url}: is it a `tokenmill pretrain --output` folder? "
            f"(a run folder holds {CKPT_FILE} and {TOKENIZER_FILE})"
        )
    return run.local


def load_run(run_dir: str, device: str = "auto", cache_dir: str | None = None) -> tuple[GPT, Tokenizer, int]:
    """(model in eval mode on device, tokenizer, eos id) of a run folder; run_dir may also be its ckpt.pt."""
    # a local RUN/ckpt-STEP.pt is that checkpoint, read with the run's tokenizer
    ckpt_file = run_dir if storage.is_local(run_dir) and os.path.isfile(run_dir) else None
    run_dir = local_run(run_dir, cache_dir)
    ckpt = load_checkpoint(ckpt_file or run_dir)
    tok_path = os.path.join(run_dir, TOKENIZER_FILE)
    if not os.path.exists(tok_path):
        raise UsageError(f"no tokenizer.json in {run_dir}: a pretrain run folder holds one beside ckpt.pt")
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt).to(dev).eval()
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        model = model.to(torch.bfloat16)  # weights and KV cache in one dtype; logits are upcast to sample
    return model, load_tokenizer(tok_path), int(ckpt["data"]["eos_id"])


def decode_stream(tok: Tokenizer, ids: Iterable[int]) -> Iterator[str]:
    """Text pieces of a stream of token ids, each as soon as it is whole.

    A byte-level token may hold part of a multi-byte character, which decodes to U+FFFD until the tokens
    after it complete it, so trailing U+FFFDs are held back until they settle; what comes before them is
    final (UTF-8 resynchronises after every whole character). The pieces join to tok.decode(all ids): at
    the end whatever is held is flushed, an unfinished character as U+FFFD, as decode gives it.
    """
    pending: list[int] = []  # tokens since the last point where everything decoded was whole
    sent = 0  # characters of decode(pending) already yielded
    text = ""
    for i in ids:
        pending.append(i)
        text = tok.decode(pending)
        settled = len(text.rstrip("\ufffd"))
        if settled < len(text):  # maybe an unfinished character: yield only what precedes it
            if settled > sent:
                yield text[sent:settled]
                sent = settled
            continue
        if len(text) > sent:
            yield text[sent:]
        pending, sent, text = [], 0, ""
    if len(text) > sent:
        yield text[sent:]


def _check_sampling(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float) -> None:
    if max_new_tokens < 0:
        raise UsageError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise UsageError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 0:
        raise UsageError(f"top_k must be >= 0, got {top_k}")
    if not 0 < top_p <= 1:
        raise UsageError(f"top_p must be in (0, 1] (1 = off), got {top_p}")


def stream_text(
    run_dir: str,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 200,
    top_p: float = 1.0,
    seed: int = 1337,
    device: str = "auto",
    cache_dir: str | None = None,
) -> Iterator[str]:
    """Continue prompt with up to max_new_tokens tokens, yielding the new text piece by piece as it is
    sampled (never half a character); stops at EOS (not yielded).

    temperature 0 is greedy (deterministic); top_k None or 0 samples from the whole vocabulary; top_p 1 is
    no nucleus cut. The same seed gives the same text. Arguments are checked and the model loaded here,
    before the first piece is asked for.
    """
    _check_sampling(max_new_tokens, temperature, top_k, top_p)
    model, tok, eos = load_run(run_dir, device, cache_dir)
    dev = next(model.parameters()).device
    # Training documents follow an EOS in the token stream, so EOS + prompt reads as "a document starting
    # with prompt" (and gives an empty prompt something to condition on).
    ids = [eos] + tok.encode(prompt, add_special_tokens=False).ids
    idx = torch.tensor([ids], dtype=torch.long, device=dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    steps = generate_tokens(model, idx, max_new_tokens, temperature, top_k or None, eos, gen, top_p=top_p)
    new_ids = (int(step) for step in steps)
    return decode_stream(tok, (i for i in new_ids if i != eos))


def generate_text(
    run_dir: str,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int = 1337,
    device: str = "auto",
    cache_dir: str | None = None,
    top_p: float = 1.0,
) -> str:
    """Continue prompt with up to max_new_tokens tokens; stop at EOS. Returns only the new text (the
    pieces of stream_text joined)."""
    return "".join(
        stream_text(run_dir, prompt, max_new_tokens, temperature, top_k, top_p, seed, device, cache_dir)
    )
