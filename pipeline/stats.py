"""Counters a stage task keeps: documents in and out, drops by reason, anything else worth a number.

Error messages are kept up to a cap (a task over a broken file could write millions) while the count of
all of them is exact: `errors_total` always says how many there were.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_ERRORS = 100  # messages one Stats keeps; the merged stage stats keep the same number


@dataclass
class Stats:
    counters: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)  # reason -> documents dropped for it
    errors: list[str] = field(default_factory=list)  # corrupt records and files: what, where, why
    errors_total: int = 0  # every error, kept or not

    def add(self, name: str, n: int | float = 1) -> None:
        self.counters[name] += n

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def error(self, message: str) -> None:
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    def merge(self, other: Stats) -> Stats:
        self.counters.update(other.counters)
        self.dropped.update(other.dropped)
        self.errors.extend(other.errors[: MAX_ERRORS - len(self.errors)])
        self.errors_total += other.errors_total
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "counters": dict(sorted(self.counters.items())),
            "dropped": dict(self.dropped.most_common()),
            "errors": self.errors,
            "errors_total": self.errors_total,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        errors = list(data.get("errors", []))
        return cls(
            Counter(data.get("counters", {})),
            Counter(data.get("dropped", {})),
            errors,
            int(data.get("errors_total", len(errors))),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)
