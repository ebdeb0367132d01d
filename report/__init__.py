"""A whole run in one report: what each stage kept and dropped, and why; what the documents look like
(languages, lengths, domains, duplicate clusters); what the shards hold; how pretraining went.

`collect` walks a run folder into a JSON-serialisable dict (report.json), `format_summary` prints it for a
terminal and `render_html` makes one self-contained page of it (report.html: plots inline, no network).
"""

from report.collect import DEFAULT_SAMPLE_DOCS, collect
from report.html import render_html
from report.summary import format_summary

__all__ = ["DEFAULT_SAMPLE_DOCS", "collect", "format_summary", "render_html"]
