"""How long to wait before trying again: one formula for every retry."""

from __future__ import annotations


def backoff_s(attempt: int, first_s: float, largest_s: float) -> float:
    """Wait before try ``attempt`` + 1: ``first_s`` doubled per try, at most ``largest_s``.

    Args:
        attempt: Tries that have failed so far (1 for the first failure).
        first_s: Wait after the first failure.
        largest_s: Ceiling of the wait.
    """
    return min(first_s * 2 ** max(attempt - 1, 0), largest_s)
