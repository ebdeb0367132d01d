"""The report as a terminal reads it: the stage table first (as `tokenmill report` always printed it), then
a few lines on the final documents, the shards and pretraining."""

from __future__ import annotations

from typing import Any


def _stage_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"{'stage':<16}{'docs in':>9}{'kept':>9}{'dropped':>9}{'errors':>8}{'seconds':>9}"]
    incomplete = [s["stage"] for s in report["stages"] if not s.get("complete", True)]
    for s in report["stages"]:
        if s["stage"] == "pretrain":
            continue
        dropped = sum(s["dropped"].values())
        secs = f"{s['wall_seconds']:.1f}" if s.get("wall_seconds") is not None else "-"
        lines.append(
            f"{s['stage']:<16}{s['docs_in']:>9}{s['docs_out']:>9}{dropped:>9}{s['errors_total']:>8}{secs:>9}"
        )
        for reason, n in sorted(s["dropped"].items(), key=lambda kv: -kv[1]):
            lines.append(f"{'':<18}{n:>6}  {reason}")
    if incomplete:
        lines.append(f"INCOMPLETE (interrupted or failed tasks; rerun to finish): {', '.join(incomplete)}")
    return lines


def _shard_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    if (sh := report.get("shards")) is not None:
        lines.append(
            f"shards: {sh['train']['num_tokens']:,} train tokens in {sh['train']['num_docs']} docs "
            f"({sh['train']['num_shards']} shards), {sh['val']['num_tokens']:,} val tokens in "
            f"{sh['val']['num_docs']} docs; {sh['dtype']}, vocab {sh['vocab_size']}  [{sh['folder']}]"
        )
    lines += _token_lines(report)
    for s in report["stages"]:
        if s["stage"] == "pretrain":
            val = f", val loss {s['final_val_loss']:.3f}" if s.get("final_val_loss") is not None else ""
            lines.append(
                f"pretrain: {s['steps']} steps, loss {s['final_loss']:.3f}{val}, "
                f"{s.get('tokens_per_s') or 0:,.0f} tokens/s, {s.get('wall_seconds') or 0:.0f}s"
                f"  [{s['output']}]"
            )
    return lines


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def sample_phrase(sample: dict[str, Any]) -> str:
    """'all 1,234' or 'a sample of 200,000 of 3,000,000' documents."""
    total = sample.get("docs_total")
    if not sample.get("sampled"):
        return f"all {sample['docs_read']:,}"
    return f"a sample of {sample['docs_read']:,}" + (f" of {total:,}" if total is not None else "")


def _document_lines(report: dict[str, Any]) -> list[str]:
    docs = report.get("documents") or {}
    if not docs:
        return []
    stage = list(docs)[-1]  # the last document stage: the corpus the tokenizer saw
    kept = docs[stage]["kept"]
    lines = [f"documents kept by {stage} ({sample_phrase(kept['sample'])}):"]
    langs = kept["languages"]
    n = sum(langs.values())
    if n:
        top = ", ".join(f"{lang} {c / n:.0%}" for lang, c in list(langs.items())[:6])
        lines.append(f"  languages: {top}")
    chars = kept["chars"]
    if chars["count"]:
        lines.append(
            f"  characters: median {_num(chars['p50'])} (10%: {_num(chars['p10'])}, "
            f"90%: {_num(chars['p90'])}, max {_num(chars['max'])})"
        )
    if kept["top_domains"]:
        lines.append("  top domains: " + ", ".join(f"{d} ({c})" for d, c in kept["top_domains"][:5]))
    if (dd := report.get("dedup")) is not None and not dd["clusters_counted"]:
        lines.append("  duplicate clusters: none")
    elif dd is not None:
        sampled = "" if dd["sampled_fraction"] >= 1 else f" (a {dd['sampled_fraction']:.2%} hash sample)"
        lines.append(
            f"  duplicate clusters: {dd['clusters_counted']:,}{sampled}, "
            f"{dd['documents_in_clusters']:,} documents in them, largest {dd['largest']:,}"
        )
    return lines


def _token_lines(report: dict[str, Any]) -> list[str]:
    tok = report.get("tokens")
    if not tok:
        return []
    lengths = tok["lengths"]
    line = (
        f"tokens per document: median {_num(lengths['p50'])} (10%: {_num(lengths['p10'])}, "
        f"90%: {_num(lengths['p90'])}; {sample_phrase(lengths['sample'])} docs)"
    )
    bpt = tok.get("bytes_per_token")
    how = (
        "n/a" if bpt is None else f"{bpt['bytes_per_token']:.2f} ({'sampled' if bpt['sampled'] else 'exact'})"
    )
    return [line, f"bytes per token: {how}"]


def format_summary(report: dict[str, Any]) -> str:
    """The terminal summary: the stage table, then documents, tokens and pretraining in a few lines."""
    lines = _stage_lines(report) + _document_lines(report) + _shard_lines(report)
    return "\n".join(lines)
