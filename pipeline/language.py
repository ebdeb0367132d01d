"""The language step: py3langid (its model ships inside the wheel: nothing is downloaded), at numpy speed.

py3langid scores the byte n-grams of a text, found by walking a DFA over its bytes one at a time in
Python (~0.3 us a byte: 3 ms for a 10 kB page). Its DFA is an Aho-Corasick automaton over n-grams of at
most L bytes, so the state after any byte depends only on the last L bytes: running the DFA from its start
over each byte's L-byte window gives the same state, and that runs for all bytes at once in L numpy steps.
The counts, and so the scores, are py3langid's own (a test checks them against its walk).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from pipeline.documents import Document

LANGID_MAX_CHARS = 4_000  # decides all 1,344 dev pages as their first 100k characters do (3,000: one not)


@dataclass(frozen=True)
class LanguageConfig:
    enabled: bool = True
    languages: tuple[str, ...] = ("en",)  # ISO 639-1 codes py3langid knows; empty: keep every language
    min_score: float = 0.65


class VectorLanguageIdentifier(LanguageIdentifier):
    """py3langid's identifier with its byte walk done for all bytes at once."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._next = np.asarray(self.tk_nextmove, dtype=np.int32)
        self._rows = np.asarray(self.tk_row, dtype=np.int64) << 8
        self._out = np.asarray(self.tk_output, dtype=np.int64)
        self._depth = _deepest_state(self._next, self._rows)
        # the state after any two bytes from the start: one lookup in 256 kB instead of two in 39 MB
        first = self._next[self._rows[0] + np.arange(256)]
        self._two = self._next[(self._rows[first][:, None] + np.arange(256)).ravel()]
        assert self._next[self._rows[0]] == 0, "a NUL byte must leave the start state (padding below)"
        # py3langid's weights are float16: a float32 copy (57 MB) makes the scoring product 4x faster
        self._weights = np.asarray(self.nb_ptc, dtype=np.float32)

    def visit_counts(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(feature ids, counts) of the n-grams in `data`: py3langid's `visit_counts`, vectorised."""
        d, n = self._depth, len(data)
        # NUL bytes before the text keep the start state, so every byte gets a full window of d bytes
        b = np.concatenate((np.zeros(d - 1, dtype=np.int64), np.frombuffer(data, dtype=np.uint8)))
        state = self._two[(b[:n] << 8) + b[1 : n + 1]].astype(np.int64)
        for k in range(2, d):
            state = self._next[self._rows[state] + b[k : n + k]]
        features = self._out[state]
        return np.unique(features[features >= 0], return_counts=True)

    def _raw_score(self, text: bytes) -> np.ndarray:
        ids, counts = self.visit_counts(text)
        if not len(ids):
            return super()._raw_score(b"")  # py3langid's score for a text without features
        return np.log1p(counts.astype(np.float32)) @ self._weights[ids] + self.nb_pc


def _deepest_state(nextmove: np.ndarray, rows: np.ndarray) -> int:
    """The longest string any DFA state stands for: its distance from the start state."""
    depth = np.full(len(rows), -1, dtype=np.int64)
    depth[0], frontier, d = 0, np.array([0]), 0
    while len(frontier):
        reached = nextmove[(rows[frontier][:, None] + np.arange(256)).ravel()]
        frontier = np.unique(reached[depth[reached] < 0])
        d += 1
        depth[frontier] = d
    return int(depth.max())


@cache
def language_identifier() -> VectorLanguageIdentifier:
    # loaded once per process (~1 s); normalised probabilities make min_score a probability
    return VectorLanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


class LanguageFilter:
    name = "language"

    def __init__(self, cfg: LanguageConfig = LanguageConfig()) -> None:
        self.languages = frozenset(cfg.languages)
        self.min_score = cfg.min_score

    def check(self, doc: Document) -> str | None:
        """None to keep, or `language.<code>` (not wanted), `language.score` (unsure), `language.empty`."""
        text = doc.text[:LANGID_MAX_CHARS]
        if not text.strip():
            doc.metadata["language_score"] = 0.0
            return "language.empty"
        lang, score = language_identifier().classify(text)
        doc.metadata["language"], doc.metadata["language_score"] = lang, round(float(score), 4)
        if self.languages and lang not in self.languages:
            return f"language.{lang}"
        if score < self.min_score:
            return "language.score"
        return None
