"""Filter anchor: datatrove 0.10.1's own filter blocks, as in its FineWeb example, document by document.

For every document of a tokenmill document folder (Parquet `part-*.parquet` with columns `id`, `url`,
`text`; `metadata` is ignored) this evaluates EVERY step, never stopping at the first drop, in FineWeb's
order (datatrove examples/fineweb.py, after Trafilatura and LanguageFilter), each on the text as it
stands then:

    url                URLFilter()
    gopher_repetition  GopherRepetitionFilter()
    gopher_quality     GopherQualityFilter()
    c4                 C4QualityFilter(filter_no_terminal_punct=False)  # when it keeps the doc it rewrites
                                                                        # doc.text (drops lines): later
                                                                        # steps see that text
    fineweb_quality    FineWebQualityFilter()
    badwords           C4BadWordsFilter()   (language "en"; a datatrove block, not in the FineWeb example)

and, as information on a copy of the input text (they feed no rule): ftfy = whether FTFYFormatter()
changed the text, pii = how many e-mails / public IPs PIIFormatter() replaced (its own regexes and IP
validator). Each block's `filter(doc)` is called directly on a datatrove `Document(text, id,
metadata={"url", "language": "en"})`, as its own `run()` would. One JSON line per document:

    {"id", "steps": {"url": null|"reason", "gopher_repetition", "gopher_quality", "c4",
     "fineweb_quality", "badwords"}, "c4_text_sha1": sha1 of the text after c4 (null if c4 dropped),
     "ftfy_changed", "pii_replaced"}

a step is null when the block keeps the document, else datatrove's reason (the block's name if it gives
none; "error:<Exception>" if it raised). Printed: the mean time per document of each step (perf_counter
around each filter() call; one-time setup, i.e. the URL blocklist extraction, tldextract's trie, the
bad-word regex and spaCy's load, is done and timed before), the total, and the drops per step and reason.

Timing: datatrove's split_into_words/split_into_sentences are an lru_cache(5) over the text, so
gopher_quality reuses the spaCy tokenization gopher_repetition did on the same text (as in a real
datatrove pipeline in this order); c4 runs spaCy's sentencizer per kept line; fineweb_quality tokenizes
again. `spacy_tokenize` (info) is one uncached spaCy tokenization of the input text per document.

Offline (only package registries are reachable here; nothing is downloaded at run time):
- HF_HOME (and HF_HUB_OFFLINE=1) point under --work before datatrove is imported: URLFilter extracts its
  bundled blocklist tarball into huggingface_hub's assets cache there, not into ~/.cache/huggingface.
- URLFilter's `tldextractor` is replaced by `TLDExtract(suffix_list_urls=(), cache_dir=None)`:
  tldextract's bundled public-suffix snapshot, no fetch, no cache written.
- C4BadWordsFilter: no patch. Its lists are pre-seeded where datatrove's cached_asset_path_or_download
  looks (HF assets datatrove/filters/c4_badwords/<url, "/" as "_">, plus the `.completed` marker that
  safely_create_file checks), from --badwords-dir (default ../shared/data/filters/ldnoobw-{en,de,es,fr}.txt,
  LDNOOBW @ 5faf2ba). datatrove pins its en list at an older commit (25e679f, 2016): the shared en list
  has 26 more words (e.g. "cialis", "cumshot"); de/es/fr are datatrove's. For datatrove's exact en list
  pass a --badwords-dir whose ldnoobw-en.txt is LDNOOBW's `en` at 25e679f.

Runs in datatrove's own venv (no tokenmill import), made by bench/peer_venv.py (preset "datatrove"):
    .venv/bin/python bench/peer_venv.py datatrove     # ~/.cache/tokenmill-bench/datatrove-0.10.1
    ~/.cache/tokenmill-bench/datatrove-0.10.1/bin/python bench/filter_anchor.py DOCS_DIR OUT.jsonl
    # e.g. /tmp/f7/extract /tmp/f7/anchor.jsonl: 1,344 WCXB dev pages, ~3 min on 2 cores
(`--limit N`: the first N documents; `--work DIR`: default OUT's folder/filter_anchor-work.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("url", "gopher_repetition", "gopher_quality", "c4", "fineweb_quality", "badwords")
INFO = ("ftfy", "pii", "spacy_tokenize")
BADWORD_LANGS = ("en", "de", "es", "fr")


def set_offline_env(work: Path) -> None:
    """Before datatrove / huggingface_hub are imported: their caches under `work`, no hub access."""
    os.environ["HF_HOME"] = str(work / "hf_home")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""  # any TLDExtract() made elsewhere: snapshot only
    if "huggingface_hub" in sys.modules or "datatrove" in sys.modules:
        raise RuntimeError("set_offline_env must run before huggingface_hub / datatrove are imported")


def seed_badwords(badwords_dir: Path) -> dict[str, str]:
    """Put the LDNOOBW lists where C4BadWordsFilter's cached_asset_path_or_download looks, as completed."""
    from datatrove.io import cached_asset_path_or_download, strip_protocol
    from datatrove.pipeline.filters import c4_filters
    from huggingface_hub import cached_assets_path

    download_dir = cached_assets_path(library_name="datatrove", namespace="filters", subfolder="c4_badwords")
    seeded = {}
    for lang in BADWORD_LANGS:
        url = c4_filters._EN_BADWORDS_URL if lang == "en" else c4_filters._BADWORDS_URL + lang
        local = os.path.join(download_dir, strip_protocol(url).replace("/", "_"))
        shutil.copyfile(badwords_dir / f"ldnoobw-{lang}.txt", local)
        Path(f"{local}.completed").touch()
        # datatrove's own lookup must now answer this file without downloading
        assert cached_asset_path_or_download(url, namespace="filters", subfolder="c4_badwords") == local
        seeded[lang] = local
    return seeded


def build_blocks():
    from datatrove.pipeline.filters import (
        C4BadWordsFilter,
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        URLFilter,
    )
    from datatrove.pipeline.formatters import FTFYFormatter, PIIFormatter
    from tldextract import TLDExtract

    url = URLFilter()
    url.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)
    steps = {
        "url": url,
        "gopher_repetition": GopherRepetitionFilter(),
        "gopher_quality": GopherQualityFilter(),
        "c4": C4QualityFilter(filter_no_terminal_punct=False),
        "fineweb_quality": FineWebQualityFilter(),
        "badwords": C4BadWordsFilter(),
    }
    return steps, FTFYFormatter(), PIIFormatter()


def warm_up(steps, ftfy_fmt, pii_fmt) -> dict[str, float]:
    """One-time setup outside the per-document timings: blocklists, bad-word regex, spaCy, ftfy import."""
    from datatrove.utils.text import split_into_words

    setup = {}
    t = time.perf_counter()
    steps["url"].download_data()
    steps["url"].tldextractor("https://www.example.co.uk/")  # tldextract builds its suffix trie on first use
    setup["url_blocklists"] = time.perf_counter() - t
    t = time.perf_counter()
    steps["badwords"]._get_badwords("en")
    setup["badwords_regex"] = time.perf_counter() - t
    t = time.perf_counter()
    split_into_words("Warm up the spaCy tokenizer. It loads once.")
    setup["spacy_load"] = time.perf_counter() - t
    t = time.perf_counter()
    ftfy_fmt.format("warm up")
    pii_fmt.format("warm up")
    setup["formatters"] = time.perf_counter() - t
    return setup


def pii_count(pii_fmt, text: str) -> int:
    """E-mails plus validated (public) IPs PIIFormatter.format would replace, in its order (e-mails first)."""
    n = 0
    if pii_fmt.remove_emails:
        n += sum(1 for _ in pii_fmt.emails_replacer.regex.finditer(text))
        text = pii_fmt.emails_replacer.replace(text)
    if pii_fmt.remove_ips:
        ip = pii_fmt.ip_replacer
        n += sum(1 for m in ip.regex.finditer(text) if ip.validator is None or ip.validator(m.group(0)))
    return n


def read_docs(docs_dir: Path, limit: int | None):
    import pyarrow.parquet as pq

    files = sorted(docs_dir.glob("part-*.parquet"))
    if not files:
        raise SystemExit(f"no part-*.parquet in {docs_dir}")
    n = 0
    for f in files:
        table = pq.read_table(f, columns=["id", "url", "text"])
        for row in table.to_pylist():
            if limit is not None and n >= limit:
                return
            yield row
            n += 1


def run(docs_dir: Path, out: Path, limit: int | None, badwords_dir: Path) -> None:
    from datatrove.data import Document
    from datatrove.pipeline.filters.base_filter import get_filter_result
    from datatrove.utils.text import split_into_parts

    seeded = seed_badwords(badwords_dir)
    steps, ftfy_fmt, pii_fmt = build_blocks()
    setup = warm_up(steps, ftfy_fmt, pii_fmt)
    tokenize_uncached = split_into_parts.__wrapped__

    spent = Counter()
    drops = Counter()
    reasons = Counter()
    info = Counter()
    n = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fout:
        for row in read_docs(docs_dir, limit):
            text = row["text"] or ""
            doc = Document(text=text, id=row["id"], metadata={"url": row["url"] or "", "language": "en"})
            verdict: dict[str, str | None] = {}
            c4_sha1 = None
            for name, block in steps.items():
                t = time.perf_counter()
                try:
                    res = block.filter(doc)
                except Exception as e:  # recorded, never silent: a block that raises drops the doc here
                    res = (False, f"error:{type(e).__name__}")
                spent[name] += time.perf_counter() - t
                keep, reason = get_filter_result(res)
                verdict[name] = None if keep else (reason or block.name)
                if not keep:
                    drops[name] += 1
                    reasons[(name, verdict[name])] += 1
                if name == "c4" and keep:
                    c4_sha1 = hashlib.sha1(doc.text.encode("utf-8")).hexdigest()
            t = time.perf_counter()
            ftfy_changed = ftfy_fmt.format(text) != text
            spent["ftfy"] += time.perf_counter() - t
            t = time.perf_counter()
            pii_fmt.format(text)
            spent["pii"] += time.perf_counter() - t
            pii = pii_count(pii_fmt, text)
            t = time.perf_counter()
            tokenize_uncached(text, mode="WORDS", language="en")
            spent["spacy_tokenize"] += time.perf_counter() - t
            info["ftfy_changed"] += ftfy_changed
            info["pii_docs"] += pii > 0
            info["pii_replaced"] += pii
            info["kept_all"] += all(v is None for v in verdict.values())
            fout.write(
                json.dumps(
                    {
                        "id": row["id"],
                        "steps": verdict,
                        "c4_text_sha1": c4_sha1,
                        "ftfy_changed": ftfy_changed,
                        "pii_replaced": pii,
                    }
                )
                + "\n"
            )
            n += 1

    from importlib.metadata import version

    print(f"datatrove {version('datatrove')}: {n} documents from {docs_dir} -> {out}")
    print(f"bad-word lists seeded ({', '.join(seeded)}) in {os.path.dirname(seeded['en'])}")
    print("setup (s, once): " + ", ".join(f"{k} {v:.2f}" for k, v in setup.items()))
    print(f"{'step':<18} {'ms/doc':>8} {'dropped':>8}")
    for name in STEPS:
        print(f"{name:<18} {1000 * spent[name] / max(n, 1):8.3f} {drops[name]:8d}")
    total = sum(spent[s] for s in STEPS)
    print(f"{'total (6 steps)':<18} {1000 * total / max(n, 1):8.3f}   kept by all: {info['kept_all']}")
    for name in INFO:
        print(f"{name + ' (info)':<18} {1000 * spent[name] / max(n, 1):8.3f}")
    print(f"ftfy changed {info['ftfy_changed']} docs; ", end="")
    print(f"pii replaced {info['pii_replaced']} in {info['pii_docs']} docs")
    print("drops per reason:")
    for (name, reason), c in sorted(reasons.items(), key=lambda kv: (STEPS.index(kv[0][0]), -kv[1])):
        print(f"  {name:<18} {reason:<32} {c:6d}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("docs_dir", type=Path, help="folder of part-*.parquet (id, url, text)")
    p.add_argument("out", type=Path, help="JSONL, one line per document")
    p.add_argument("--limit", type=int, default=None, help="only the first N documents")
    p.add_argument(
        "--work", type=Path, default=None, help="HF_HOME etc. (default: OUT's folder/filter_anchor-work)"
    )
    p.add_argument(
        "--badwords-dir",
        type=Path,
        default=REPO.parent / "shared/data/filters",
        help="folder with ldnoobw-{en,de,es,fr}.txt",
    )
    args = p.parse_args()
    work = (args.work or args.out.parent / "filter_anchor-work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    set_offline_env(work)
    run(args.docs_dir, args.out, args.limit, args.badwords_dir)


if __name__ == "__main__":
    main()
