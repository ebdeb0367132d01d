"""report.html in a real headless Chromium (Debian's, /usr/bin/chromium), driven over the DevTools protocol:
the page loads from file:// with no error and no request but its own, shows every section with its plots,
and a full-page screenshot is taken (its path is printed; TOKENMILL_REPORT_SCREENSHOT=FILE keeps a copy).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from jobs import report as report_job
from report.html import SECTIONS
from tests.report.browser import PageLoad, chromium, load
from tests.report.conftest import HOSTILE

BROWSER = chromium()
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no Chromium at /usr/bin/chromium: `make test` installs Debian's (apt-get install chromium)",
)
PLOTS = {"languages", "char-lengths", "token-lengths", "dedup-clusters", "shards", "pretrain"}


@pytest.fixture(scope="module")
def page(run_folder, tmp_path_factory) -> tuple[PageLoad, Path]:
    out = tmp_path_factory.mktemp("report-html")
    html = out / "report.html"
    assert report_job.main([str(run_folder.path), "-o", str(out / "report.json"), "--html", str(html)]) == 0
    loaded = load(html.as_uri(), BROWSER)
    shot = out / "report.png"
    shot.write_bytes(loaded.screenshot)
    print(f"\nreport.html screenshot: {shot}")
    if keep := os.environ.get("TOKENMILL_REPORT_SCREENSHOT"):
        shutil.copyfile(shot, keep)
    return loaded, html


def test_page_loads_with_no_error_and_no_request_but_its_own(page):
    loaded, html = page
    assert loaded.requests == [html.as_uri()]
    assert loaded.failed == []
    assert loaded.errors() == [], loaded.console
    assert loaded.dom["readyState"] == "complete"
    assert loaded.dom["scripts"] == 0 and loaded.dom["externalRefs"] == []


def test_every_section_is_shown_with_its_plot(page):
    loaded, _ = page
    sections = loaded.dom["sections"]
    assert [(s["id"], s["h2"]) for s in sections] == list(SECTIONS)
    for s in sections:
        if s["id"] in PLOTS:
            (svg,) = s["svgs"]
            assert svg["w"] >= 600 and svg["h"] >= 120 and svg["paths"] > 20, (s["id"], svg)
        else:
            assert s["svgs"] == []
    text = {s["id"]: s["text"] for s in sections}
    assert "near_duplicate" in text["drops"] and "example.org" in text["domains"]
    assert "bytes per token" in text["bytes-per-token"] and "No stage recorded an error." in text["errors"]


def test_a_dropped_page_is_shown_as_text(page):
    loaded, _ = page
    drops = next(s["text"] for s in loaded.dom["sections"] if s["id"] == "drops")
    assert HOSTILE[:40] in drops  # the markup is on the page as characters: it ran nothing, loaded nothing


def test_screenshot_is_the_whole_page(page):
    from PIL import Image

    loaded, _ = page
    image = Image.open(io.BytesIO(loaded.screenshot))
    assert image.format == "PNG" and image.width == 1280
    assert image.height == min(loaded.dom["height"], 16000) > 3000
    colours = image.convert("RGB").resize((64, 256)).getcolors(64 * 256)
    assert len(colours) > 50  # text, tables and plots, not a blank page
