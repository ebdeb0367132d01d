"""Model tests run torch on one thread: tiny matmuls gain nothing from two, and lose a lot when another
process holds the second core (OpenMP threads wait on each other)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
