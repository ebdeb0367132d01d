"""report.html: the report as one self-contained page. Plots are inline SVG, the CSS is inline, there is no
script and no URL to fetch: it opens the same from a laptop, a bucket download or an air-gapped machine.

Every section is a `<section id=...>` with an `<h2>`, present whether or not the run has its data (then it
says what is missing), so a reader (and the browser test) always finds the same page structure.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

from report.summary import sample_phrase

SECTIONS = (
    ("stages", "Stages"),
    ("drops", "Drops by reason"),
    ("errors", "Errors"),
    ("languages", "Languages"),
    ("char-lengths", "Document length (characters)"),
    ("token-lengths", "Document length (tokens)"),
    ("dedup-clusters", "Duplicate clusters"),
    ("domains", "Top domains"),
    ("shards", "Tokens per shard"),
    ("bytes-per-token", "Bytes per token"),
    ("pretrain", "Pretraining loss"),
)

CSP = "default-src 'none'; style-src 'unsafe-inline'"
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
  max-width: 1100px; padding: 1.5rem 2rem 4rem; color: #1d1d1f; line-height: 1.45; background: #fff; }
header { border-bottom: 2px solid #4269d0; margin-bottom: 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .4rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; padding-top: .4rem; border-top: 1px solid #ddd; }
h3 { font-size: 1.02rem; margin: 1.2rem 0 .4rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .5rem 0 1rem; }
dl.meta dt { color: #666; } dl.meta dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: .4rem 0 .8rem; font-size: .92rem; }
th, td { padding: .28rem .7rem; border-bottom: 1px solid #e3e3e3; text-align: left; vertical-align: top; }
th { background: #f5f6f8; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: .4rem 0 1rem; } figure svg { width: 100%; max-width: 900px; height: auto; display: block; }
figcaption, .note { color: #555; font-size: .88rem; }
.na { color: #777; font-style: italic; }
.bad { color: #b3261e; font-weight: 600; }
.examples { margin: 0; padding: 0; list-style: none; max-width: 720px; }
.examples li { margin: 0 0 .4rem; }
.examples .src { color: #666; font-size: .78rem; overflow-wrap: anywhere; }
.examples pre { margin: .1rem 0 0; padding: .3rem .5rem; background: #f7f7f5; border-left: 3px solid #efb118;
  font: .8rem/1.35 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap;
  overflow-wrap: anywhere; }
.bar { background: #4269d0; height: .7rem; display: inline-block; vertical-align: middle; }
.big { font-size: 2rem; font-weight: 650; margin: .2rem 0; }
"""


def _n(x: Any, digits: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}" if isinstance(x, float) else f"{x:,}"


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    """Cells are escaped here unless they are already markup (a tuple ("html", markup))."""
    numeric = numeric or set()

    def cell(tag: str, i: int, v: Any) -> str:
        cls = ' class="n"' if i in numeric else ""
        if isinstance(v, tuple) and v and v[0] == "html":
            body = v[1]
        else:
            body = escape(f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
        return f"<{tag}{cls}>{body}</{tag}>"

    out = ["<table><thead><tr>", *(cell("th", i, h) for i, h in enumerate(head)), "</tr></thead><tbody>"]
    for row in rows:
        out += ["<tr>", *(cell("td", i, v) for i, v in enumerate(row)), "</tr>"]
    return "".join([*out, "</tbody></table>"])


def _na(text: str) -> str:
    return f'<p class="na">{escape(text)}</p>'


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _stages(r: dict[str, Any]) -> str:
    rows = []
    for s in r["stages"]:
        if s["stage"] == "pretrain":
            continue
        state = "yes" if s.get("complete", True) else ("html", '<span class="bad">INCOMPLETE</span>')
        dropped = sum(s["dropped"].values())
        rows.append(
            [s["stage"], s["docs_in"], s["docs_out"], dropped, s["errors_total"], s["wall_seconds"], state]
        )
    rows = [[*row[:5], _n(row[5], 1), row[6]] for row in rows]
    html = _table(
        ["stage", "docs in", "kept", "dropped", "errors", "seconds", "complete"], rows, {1, 2, 3, 4, 5}
    )
    for s in r["stages"]:
        if s["stage"] == "pretrain":
            val = (
                f", validation loss {s['final_val_loss']:.3f}" if s.get("final_val_loss") is not None else ""
            )
            html += (
                f"<p>pretrain: {s['steps']:,} steps, final loss {s['final_loss']:.3f}{val}, "
                f"{_n(s.get('tokens_per_s'))} tokens/s, {_n(s.get('wall_seconds'))} s</p>"
            )
    return html


def _examples(examples: list[dict[str, str]]) -> str:
    if not examples:
        return '<span class="na">no example in the documents read</span>'
    items = []
    for ex in examples:
        text = ex["text"] or "(no text)"
        src = f"{ex['url'] or ex['id']} · {int(ex['chars']):,} characters"
        items.append(f'<li><div class="src">{escape(src)}</div><pre>{escape(text)}</pre></li>')
    return f'<ul class="examples">{"".join(items)}</ul>'


def _drops(r: dict[str, Any]) -> str:
    parts = []
    for s in r["stages"]:
        if not s.get("dropped"):
            continue
        docs = r.get("documents", {}).get(s["stage"])
        examples = docs["dropped"]["examples"] if docs else {}
        rows = [
            [
                reason,
                n,
                f"{n / s['docs_in']:.1%}" if s["docs_in"] else "–",
                ("html", _examples(examples.get(reason, []))),
            ]
            for reason, n in sorted(s["dropped"].items(), key=lambda kv: -kv[1])
        ]
        note = (
            f" (examples from {sample_phrase(docs['dropped']['sample'])} dropped documents)" if docs else ""
        )
        parts.append(f'<h3>{escape(s["stage"])}</h3><p class="note">counts are exact{escape(note)}</p>')
        parts.append(_table(["reason", "documents", "of docs in", "first examples"], rows, {1, 2}))
    return "".join(parts) or _na("No stage dropped a document.")


def _errors(r: dict[str, Any]) -> str:
    rows = [
        [s["stage"], s["errors_total"], ("html", "<br>".join(escape(str(e)) for e in s["errors"][:5]) or "–")]
        for s in r["stages"]
        if s.get("errors_total")
    ]
    if not rows:
        return _na("No stage recorded an error.")
    return _table(["stage", "errors", "first messages (all in the stage's stats/merged.json)"], rows, {1})


def _language_section(r: dict[str, Any]) -> str:
    from report import plots

    docs = r.get("documents", {})
    judged = [s for s, d in docs.items() if set(d["kept"]["languages"]) - {"(none)"}]
    if not judged:
        return _na("No document has a language (the filter stage identifies them).")
    stage = "filter" if "filter" in judged else judged[0]  # the stage that judged languages
    kept, dropped = docs[stage]["kept"], docs[stage]["dropped"]
    svg = plots.languages(kept["languages"], dropped["languages"], stage)
    caption = (
        f"Documents per language as the {stage} stage identified them: "
        f"kept ({sample_phrase(kept['sample'])}) and dropped ({sample_phrase(dropped['sample'])})."
    )
    if "(none)" in dropped["languages"]:
        caption += " (none): dropped before its language was identified."
    rows = [
        [s, ", ".join(f"{k} {v:,}" for k, v in list(d["kept"]["languages"].items())[:8])]
        for s, d in docs.items()
    ]
    return _figure(svg, caption) + _table(["stage", "kept documents by language"], rows)


def _char_section(r: dict[str, Any]) -> str:
    from report import plots

    docs = r.get("documents", {})
    series = [(f"kept by {s}", d["kept"]["chars"]) for s, d in docs.items() if d["kept"]["chars"]["count"]]
    if not series:
        return _na("No document folder in this run.")
    svg = plots.length_histograms(series, "characters per document", "chars")
    rows = [
        [
            s,
            sample_phrase(d["kept"]["sample"]),
            *(_n(d["kept"]["chars"][k]) for k in ("p10", "p50", "p90", "max")),
        ]
        for s, d in docs.items()
    ]
    return _figure(svg, "Characters per kept document, log scale, 10 bins per decade.") + _table(
        ["stage", "documents", "10%", "median", "90%", "max"], rows, {2, 3, 4, 5}
    )


def _token_section(r: dict[str, Any]) -> str:
    from report import plots

    tok = r.get("tokens")
    if not tok or not tok["lengths"]["count"]:
        return _na("No token shards (manifest.json) in this run.")
    lengths = tok["lengths"]
    svg = plots.length_histograms([("documents", lengths)], "tokens per document (EOS included)", "tokens")
    caption = (
        f"Tokens per document in the shards, {sample_phrase(lengths['sample'])} documents "
        f"({lengths['sample']['shards_read']} of {lengths['sample']['shards_total']} shards): median "
        f"{_n(lengths['p50'])}, 10% {_n(lengths['p10'])}, 90% {_n(lengths['p90'])}, max {_n(lengths['max'])}."
    )
    return _figure(svg, caption)


def _dedup_section(r: dict[str, Any]) -> str:
    from report import plots

    dd = r.get("dedup")
    if dd is None:
        return _na("No dedup stage in this run.")
    if not dd["sizes"]:
        return _na(f"The dedup stage found no duplicate clusters ({dd['files_read']} files read).")
    sampled = (
        "every cluster"
        if dd["sampled_fraction"] >= 1
        else f"a {dd['sampled_fraction']:.2%} sample of clusters by hash, each counted exactly"
    )
    caption = (
        f"{dd['clusters_counted']:,} clusters of near or exact duplicates ({sampled}), "
        f"{dd['documents_in_clusters']:,} documents in them, the largest {dd['largest']:,}; "
        "a cluster's documents are the one kept and those dropped as its duplicates."
    )
    return _figure(plots.cluster_sizes(dd["sizes"]), caption)


def _domains(r: dict[str, Any]) -> str:
    docs = r.get("documents", {})
    if not docs:
        return _na("No document folder in this run.")
    stage = list(docs)[-1]
    kept = docs[stage]["kept"]
    top = kept["top_domains"]
    if not top:
        return _na(f"No documents kept by {stage}.")
    n = kept["sample"]["docs_read"] or 1
    most = top[0][1]
    rows = [
        [i, d, c, f"{c / n:.1%}", ("html", f'<span class="bar" style="width:{160 * c / most:.0f}px"></span>')]
        for i, (d, c) in enumerate(top, start=1)
    ]
    approx = " (approximate: the domain counter was pruned)" if kept["domains_pruned"] else ""
    note = (
        f"Registered domains of the documents kept by {stage}, {sample_phrase(kept['sample'])} documents, "
        f"{kept['distinct_domains']:,} distinct domains{approx}."
    )
    return f'<p class="note">{escape(note)}</p>' + _table(
        ["#", "domain", "documents", "share", ""], rows, {0, 2, 3}
    )


def _shards(r: dict[str, Any]) -> str:
    from report import plots

    tok = r.get("tokens")
    if not tok:
        return _na("No token shards (manifest.json) in this run.")
    rows = [
        [
            split,
            t["num_shards"],
            t["num_docs"],
            t["num_tokens"],
            _n(t["num_tokens"] / t["num_docs"]) if t["num_docs"] else "–",
        ]
        for split, t in tok["totals"].items()
    ]
    table = _table(["split", "shards", "documents", "tokens", "tokens per document"], rows, {1, 2, 3, 4})
    listed = [tok["per_shard"][k] for k in ("train_listed", "val_listed") if k in tok["per_shard"]]
    caption = (
        "Tokens per shard (exact, from manifest.json)"
        + (f"; {', '.join(listed)} shown" if listed else "")
        + "."
    )
    return (
        _figure(plots.shard_tokens(tok["per_shard"]), caption)
        + table
        + f'<p class="note">{escape(tok["folder"])}</p>'
    )


def _bytes_per_token(r: dict[str, Any]) -> str:
    tok = r.get("tokens")
    bpt = tok.get("bytes_per_token") if tok else None
    if bpt is None:
        return _na("n/a: no token shards, or no text to measure them against.")
    return (
        f'<p class="big">{bpt["bytes_per_token"]:.2f} bytes per token</p>'
        f'<p class="note">{bpt["text_bytes"]:,} bytes of UTF-8 text in {bpt["text_tokens"]:,} tokens '
        f"(end-of-text tokens not counted); {escape(bpt['method'])}.</p>"
    )


def _pretrain(r: dict[str, Any]) -> str:
    from report import plots

    curve = r.get("pretrain")
    if not curve or not curve["train"]:
        return _na("No pretraining metrics (metrics.jsonl) in this run.")
    caption = (
        f"Loss per logged step ({curve['points']:,} log lines; train every logged step, val where evaluated)."
    )
    return _figure(plots.loss_curve(curve), caption)


RENDER: dict[str, Callable[[dict[str, Any]], str]] = {
    "stages": _stages,
    "drops": _drops,
    "errors": _errors,
    "languages": _language_section,
    "char-lengths": _char_section,
    "token-lengths": _token_section,
    "dedup-clusters": _dedup_section,
    "domains": _domains,
    "shards": _shards,
    "bytes-per-token": _bytes_per_token,
    "pretrain": _pretrain,
}


def _header(r: dict[str, Any]) -> str:
    sample = r.get("sample_docs")
    policy = (
        f"counts are exact; distributions read at most {sample:,} kept and {sample:,} dropped documents "
        "per stage"
        if sample
        else "every document read"
    )
    meta = [
        ("run", ", ".join(r.get("folders", []))),
        ("generated", r.get("generated", "")),
        ("tokenmill", r.get("tokenmill_version", "")),
        ("sampling", policy),
    ]
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in meta)
    return f'<header><h1>tokenmill report</h1><dl class="meta">{dl}</dl></header>'


def render_html(report: dict[str, Any]) -> str:
    """The whole page, as a string; every text from the run is HTML-escaped."""
    body = [_header(report)]
    for sid, title in SECTIONS:
        body.append(f'<section id="{sid}"><h2>{escape(title)}</h2>{RENDER[sid](report)}</section>')
    title = escape("tokenmill report: " + ", ".join(report.get("folders", [])))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # the browser itself refuses any script and any fetch: the page can only show what it holds
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
