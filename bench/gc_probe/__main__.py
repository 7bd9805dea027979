"""Summary of a GC probe's logs: per engine process and 10 s window, the collections of each
generation, the milliseconds they took and the objects they found unreachable.

    python -m bench.gc_probe <GC_PROBE_DIR>
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

WINDOW_S = 10


def summarise(folder: Path) -> None:
    logs = {log: log.read_text().splitlines() for log in sorted(folder.glob("gc_*.log"))}
    origin = min(
        (float(lines[1].split()[0]) for lines in logs.values() if len(lines) > 1), default=0.0
    )
    for log, lines in logs.items():
        if not lines or " serve" not in lines[0]:
            continue  # only the engine processes (orchestrator serve)
        # (window, generation) -> [collections, ms, objects found]
        cells: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0, 0.0, 0])
        for line in lines[1:]:
            stamp, generation, took_ms, found = line.split()
            cell = cells[int((float(stamp) - origin) // WINDOW_S) * WINDOW_S, int(generation)]
            cell[0] += 1
            cell[1] += float(took_ms)
            cell[2] += int(found)
        print(f"{log.name}: {lines[0][5:]}")
        for (window, generation), (n, ms, found) in sorted(cells.items()):
            print(
                f"  {window:5d} s  gen{generation}  {n:5.0f} collections"
                f"  {ms:7.0f} ms  {found:6.0f} found"
            )


if __name__ == "__main__":
    summarise(Path(sys.argv[1]))
