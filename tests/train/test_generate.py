"""Generation from a run folder, in-process and through `tokenmill generate` / `python -m jobs.generate`;
streaming text that never splits a character."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from jobs.generate import build_parser
from jobs.generate import main as generate_main
from model.sampling import generate
from pipeline.config import UsageError
from train.generate import decode_stream, generate_text, load_run, stream_text

REPO = Path(__file__).resolve().parents[2]


def test_greedy_is_deterministic_and_returns_only_new_text(trained_run: Path) -> None:
    a = generate_text(str(trained_run), "ROMEO:", max_new_tokens=30, temperature=0.0, seed=1)
    b = generate_text(str(trained_run), "ROMEO:", max_new_tokens=30, temperature=0.0, seed=2)
    assert a == b and isinstance(a, str) and a
    assert not a.startswith("ROMEO:")


def test_sampling_is_seeded(trained_run: Path) -> None:
    texts = [
        generate_text(str(trained_run), "", max_new_tokens=30, temperature=1.0, top_k=50, seed=s)
        for s in (1, 1, 2)
    ]
    assert texts[0] == texts[1] != texts[2]


def test_stops_at_max_new_tokens_and_accepts_the_ckpt_file(trained_run: Path) -> None:
    assert generate_text(str(trained_run), "The", max_new_tokens=0) == ""
    assert generate_text(
        str(trained_run / "ckpt.pt"), "The", max_new_tokens=5, temperature=0
    ) == generate_text(str(trained_run), "The", max_new_tokens=5, temperature=0)
    with pytest.raises(UsageError, match="no checkpoint"):
        generate_text(str(trained_run.parent / "missing"), "x", max_new_tokens=5)


def test_cli_prints_only_the_generated_text(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().prog == "tokenmill generate"
    argv = [
        "--checkpoint",
        str(trained_run),
        "--prompt",
        "KING:",
        "--max-new-tokens",
        "25",
        "--temperature",
        "0",
    ]
    assert generate_main(argv) == 0
    out = capsys.readouterr()
    assert out.out == generate_text(str(trained_run), "KING:", max_new_tokens=25, temperature=0.0) + "\n"
    assert out.err == ""


def test_module_entry_point_prints_only_text(trained_run: Path) -> None:
    argv = [
        "--checkpoint",
        str(trained_run),
        "--prompt",
        "First",
        "--max-new-tokens",
        "10",
        "--temperature",
        "0",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.generate", *argv], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == generate_text(str(trained_run), "First", max_new_tokens=10, temperature=0.0) + "\n"
    assert "Traceback" not in proc.stderr


MIXED = "ROMEO: a 😀 b, 中文 and café; 🇫🇷 ok \ufffd end"


def test_decode_stream_never_splits_a_character(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(MIXED).ids
    # the 512-token vocabulary has no merges for these: each is several byte tokens, none whole alone
    assert sum(tokenizer.decode([i]) == "\ufffd" for i in ids) >= 10
    pieces = list(decode_stream(tokenizer, ids))
    assert "".join(pieces) == tokenizer.decode(ids) == MIXED
    # the text's own U+FFFD is emitted too, once the token after it shows it is not a partial character
    assert all(pieces) and not any(p.endswith("\ufffd") for p in pieces)
    assert len(pieces) > 5  # the stream does not wait for the end


@pytest.mark.parametrize("cut", range(1, 12))
def test_decode_stream_prefixes_join_to_decode(tokenizer: Tokenizer, cut: int) -> None:
    # every prefix of the ids, cut mid-character too: the pieces join to decode(prefix), and only the
    # final piece (the flush) may end in an unfinished character
    ids = tokenizer.encode("x 😀中é 🙂y").ids[:cut]
    pieces = list(decode_stream(tokenizer, ids))
    assert "".join(pieces) == tokenizer.decode(ids)
    assert not any(p.endswith("\ufffd") for p in pieces[:-1])


def test_decode_stream_yields_a_character_as_soon_as_it_completes(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("a 😀b").ids
    assert [tokenizer.decode([i]) for i in ids].count("\ufffd") == 4  # four UTF-8 bytes, four tokens
    consumed = 0

    def feed():  # counts the ids the decoder has read when it yields
        nonlocal consumed
        for i in ids:
            consumed += 1
            yield i

    got = [(consumed, piece) for piece in decode_stream(tokenizer, feed())]
    first_byte = 1 + next(k for k, i in enumerate(ids[1:]) if tokenizer.decode([i]) == "\ufffd")
    emoji_at = next(n for n, p in got if "😀" in p)
    assert emoji_at == first_byte + 4  # right after its last byte, not before and not later
    assert "".join(p for _, p in got) == "a 😀b"


def test_stream_joins_to_the_decoded_new_tokens(trained_run: Path) -> None:
    kw = dict(max_new_tokens=60, temperature=1.0, top_k=None, top_p=0.9, seed=3, device="cpu")
    pieces = list(stream_text(str(trained_run), "KING:", **kw))
    assert len(pieces) > 1 and all(pieces)
    # independently: the same sampling through model.sampling.generate, decoded at once
    model, tok, eos = load_run(str(trained_run), "cpu")
    ids = [eos] + tok.encode("KING:", add_special_tokens=False).ids
    gen = torch.Generator().manual_seed(3)
    out = generate(model, torch.tensor([ids]), 60, temperature=1.0, eos_id=eos, generator=gen, top_p=0.9)
    new = out[0, len(ids) :].tolist()
    new = new[: new.index(eos)] if eos in new else new
    assert "".join(pieces) == tok.decode(new)
    assert generate_text(str(trained_run), "KING:", **kw) == "".join(pieces)


def test_stream_stops_at_eos(trained_run: Path) -> None:
    model, tok, eos = load_run(str(trained_run), "cpu")
    ids = [eos] + tok.encode("KING:", add_special_tokens=False).ids
    for seed in range(30):  # a seed whose sample ends its document well before 300 tokens
        gen = torch.Generator().manual_seed(seed)
        new = generate(model, torch.tensor([ids]), 300, temperature=1.0, eos_id=eos, generator=gen)[
            0, len(ids) :
        ]
        if new[-1].item() == eos and len(new) < 300:
            break
    else:
        pytest.fail("no sample reached an end of document")
    text = generate_text(
        str(trained_run), "KING:", max_new_tokens=300, temperature=1.0, top_k=None, seed=seed
    )
    assert text == tok.decode(new[:-1].tolist())  # nothing after the EOS, and the EOS not shown


def test_tiny_top_p_is_greedy(trained_run: Path) -> None:
    greedy = generate_text(str(trained_run), "First", max_new_tokens=30, temperature=0.0)
    nucleus = generate_text(str(trained_run), "First", max_new_tokens=30, temperature=1.0, top_p=1e-6, seed=5)
    assert nucleus == greedy


def run_cli(capsys: pytest.CaptureFixture[str], *extra: str, checkpoint: Path) -> tuple[int, str, str]:
    argv = ["--checkpoint", str(checkpoint), "--prompt", "KING:", "--max-new-tokens", "40", *extra]
    code = generate_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_top_p_is_seeded(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [
        run_cli(capsys, "--temperature", "1", "--top-p", "0.9", "--seed", s, checkpoint=trained_run)
        for s in ("1", "1", "2")
    ]
    assert all(code == 0 and err == "" for code, _, err in runs)
    assert runs[0][1] == runs[1][1] != runs[2][1]
    assert (
        runs[0][1]
        == generate_text(str(trained_run), "KING:", max_new_tokens=40, temperature=1.0, top_p=0.9, seed=1)
        + "\n"
    )
    # --top-p changes what is sampled (a near-zero p is greedy)
    _, tiny, _ = run_cli(capsys, "--temperature", "1", "--top-p", "1e-6", checkpoint=trained_run)
    _, greedy, _ = run_cli(capsys, "--temperature", "0", checkpoint=trained_run)
    assert tiny == greedy


def test_cli_help_documents_top_p(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        generate_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--top-p P" in text and "1.0 = off" in text


@pytest.mark.parametrize("top_p", ["0", "1.5", "-0.2"])
def test_cli_bad_top_p_is_one_line(trained_run: Path, capsys: pytest.CaptureFixture[str], top_p: str) -> None:
    code, out, err = run_cli(capsys, "--top-p", top_p, checkpoint=trained_run)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokenmill generate: error: ") and "top_p" in lines[0]


def test_a_numbered_checkpoint_file_is_that_checkpoint(trained_run: Path) -> None:
    older, _, _ = load_run(str(trained_run / "ckpt-0000190.pt"), "cpu")
    newest, _, _ = load_run(str(trained_run / "ckpt.pt"), "cpu")
    run, _, _ = load_run(str(trained_run), "cpu")
    weights = [dict(m.named_parameters())["embed.weight"] for m in (older, newest, run)]
    assert torch.equal(weights[1], weights[2]) and not torch.equal(weights[0], weights[1])
