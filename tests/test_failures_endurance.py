"""Endurance: a flapping fleet scraped by two concurrent scrapers, for about 15 seconds.

No scrape may fail or miss its deadline, and file descriptors, tasks, client sessions and memory must
stay flat after warm-up. bench/endurance.py runs the same code for longer.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "bench" / "endurance.py"
    spec = importlib.util.spec_from_file_location("bench_endurance", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_flapping_fleet_stays_on_time_and_flat() -> None:
    endurance = _bench()

    report = await endurance.run(15.0, workers=6, seed=1, warm_up=5.0)
    print(report.line())

    assert report.errors == []
    assert report.scrapes > 200
    assert report.slowest < endurance.SCRAPE_TIMEOUT
    warm, end = report.warm, report.end
    # One session per worker, plus the one the test scrapes the exporter with.
    assert end.sessions == warm.sessions == 7
    assert end.fds <= warm.fds + 12, (warm, end)
    assert end.tasks <= warm.tasks + 12, (warm, end)
    assert end.rss_mb <= warm.rss_mb + 25, (warm, end)
