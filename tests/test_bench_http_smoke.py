"""The HTTP benchmark runs end to end and produces a sound table (speed is not asserted)."""

from __future__ import annotations

import math

import pytest

from benchmarks.bench_http import HTTP, SOCKET, format_table, run


@pytest.mark.timeout(120)
async def test_bench_http_measures_both_services():
    results = await run(runs=1, replies=1)
    assert set(results) == {SOCKET, HTTP}
    for name, result in results.items():
        assert result.problems == [], f"{name}: {result.problems}"
        numbers = [*result.cold_ms, *result.warm_ms, *result.cpu_ms_per_audio_s]
        assert len(numbers) == 3 and all(math.isfinite(v) and v > 0 for v in numbers), name
    table = format_table(results)
    assert SOCKET in table and HTTP in table and "n/a" not in table
