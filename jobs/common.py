"""What every `jobs/` entry point shares: one clear line and a non-zero exit for user mistakes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


class UsageError(Exception):
    """A mistake the user can fix (bad argument, missing input): printed as one line, exit status 2."""


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int | None],
            argv: Sequence[str] | None = None) -> int:
    args = parser.parse_args(argv)  # argparse itself prints usage + one error line and exits 2
    try:
        return run(args) or 0
    except UsageError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
