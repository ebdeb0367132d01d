"""A peer tool's own venv for a bench: created with `python -m venv`, pip-installed when missing or wrong.

    from peer_venv import ensure_venv
    py = ensure_venv(Path("~/.cache/tokenmill-bench/x").expanduser(), ["x==1.0"], check="import x")

torch is always constrained to the CPU build on the machine (`pip install -c` a constraints file with
torch==2.13.0): a requirement that pulls torch gets that one, never an unpinned torch with GB of CUDA
wheels; one that does not pull torch installs no torch.

Command line (a preset by name, or a venv, a check and requirements):
    .venv/bin/python bench/peer_venv.py datatrove     # the filter anchor's venv, see PRESETS
    .venv/bin/python bench/peer_venv.py VENV CHECK REQUIREMENT...
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

TORCH_PIN = "torch==2.13.0"
CACHE = Path("~/.cache/tokenmill-bench").expanduser()

# datatrove's FineWeb filter blocks (bench/filter_anchor.py). Not datatrove[processing]: it pins an old
# trafilatura. What the blocks import: spacy (English words and sentences: spacy.blank("en") + sentencizer,
# no model download), tldextract, fasteners, pyahocorasick (URLFilter), regex (datatrove.utils.text), ftfy
# (FTFYFormatter), aiohttp (fsspec's http strip_protocol in cached_asset_path_or_download, which
# C4BadWordsFilter calls even when its list is cached), pyarrow (reading the Parquet documents).
PRESETS = {
    "datatrove": (
        CACHE / "datatrove-0.10.1",
        [
            "datatrove==0.10.1",
            "spacy",
            "tldextract",
            "fasteners",
            "pyahocorasick",
            "regex",
            "ftfy",
            "aiohttp",
            "pyarrow",
        ],
        "import importlib.metadata as m; assert m.version('datatrove') == '0.10.1'\n"
        "import datatrove.pipeline.filters, datatrove.pipeline.formatters\n"
        "import spacy, tldextract, fasteners, ahocorasick, regex, ftfy, aiohttp, pyarrow\n"
        "spacy.blank('en').add_pipe('sentencizer')",
    ),
}


def _log(msg: str) -> None:
    print(f"[peer_venv] {msg}", file=sys.stderr, flush=True)


def check_ok(py: Path, check: str) -> bool:
    """Whether `py -c check` exits 0 (False when the venv's python is missing)."""
    if not py.exists():
        return False
    return subprocess.run([str(py), "-c", check], capture_output=True, text=True).returncode == 0


def ensure_venv(path: Path, requirements: list[str], check: str) -> Path:
    """The venv at `path`'s python; the venv is created and `requirements` pip-installed (torch pinned to
    TORCH_PIN when anything pulls it) when it is missing or the python -c snippet `check` fails."""
    path = Path(path).expanduser()
    py = path / "bin" / "python"
    if check_ok(py, check):
        return py
    if not py.exists():
        _log(f"creating venv {path} ({sys.executable} -m venv)")
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    reqs = [
        TORCH_PIN if re.split(r"[\[<>=!~; ]", r.strip(), maxsplit=1)[0] == "torch" else r
        for r in requirements
    ]
    _log(f"installing into {path}: {' '.join(reqs)} (constraint {TORCH_PIN})")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="constraints-", delete=False) as c:
        c.write(TORCH_PIN + "\n")
    try:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", c.name, *reqs], check=True)
    finally:
        Path(c.name).unlink(missing_ok=True)
    if not check_ok(py, check):
        out = subprocess.run([str(py), "-c", check], capture_output=True, text=True)
        raise RuntimeError(f"venv {path}: check still fails after install:\n{out.stderr[-2000:]}")
    return py


def ensure_preset(name: str) -> Path:
    path, requirements, check = PRESETS[name]
    return ensure_venv(path, requirements, check)


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] in PRESETS:
        print(ensure_preset(sys.argv[1]))
    elif len(sys.argv) >= 4:
        print(ensure_venv(Path(sys.argv[1]), sys.argv[3:], sys.argv[2]))
    else:
        raise SystemExit(__doc__)
