"""Counters a stage task keeps: documents in and out, drops by reason, anything else worth a number."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    counters: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)  # reason -> documents dropped for it
    errors: list[str] = field(default_factory=list)  # corrupt records and files: what, where, why

    def add(self, name: str, n: int | float = 1) -> None:
        self.counters[name] += n

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def error(self, message: str) -> None:
        self.errors.append(message)

    def merge(self, other: Stats) -> Stats:
        self.counters.update(other.counters)
        self.dropped.update(other.dropped)
        self.errors.extend(other.errors)
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "counters": dict(sorted(self.counters.items())),
            "dropped": dict(self.dropped.most_common()),
            "errors": self.errors,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        return cls(
            Counter(data.get("counters", {})), Counter(data.get("dropped", {})), list(data.get("errors", []))
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)
