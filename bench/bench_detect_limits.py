"""Matching stays linear in the value length (issue 16): wildcard ``matches``, parse anchors, Sigma ``|re``.

Times each matcher on a 1 KiB and a 32 KiB value side by side in one process and prints the ratio;
linear matching gives about 32x, the backtracking matchers this replaced grew quadratically or
exponentially (48 s for one 32 KB command line, > 300 s with ten wildcards).

    python bench/bench_detect_limits.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.detect.sumo.patterns import regex_predicate, wildcard_capture, wildcard_predicate


def best(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    cases: list[tuple[str, Callable[[str], object]]] = [
        ("matches '*a*a*...*b' (10 stars)", wildcard_predicate("*a" * 10 + "*b")),
        ("scope keyword, ignore case", wildcard_predicate("*a" * 10 + "*b", ignore_case=True)),
        ("parse 'x*y*z*w'", wildcard_capture("x*y*z*w").search),
        ("Sigma |re '^(a+)+$'", regex_predicate("^(a+)+$")),
    ]
    print(f"{'matcher':40} {'1 KiB':>10} {'32 KiB':>10} {'ratio':>7}")
    for name, fn in cases:
        small, large = "a" * 1024 + "!", "a" * 32_768 + "!"
        t1 = best(lambda fn=fn, v=small: fn(v))
        t32 = best(lambda fn=fn, v=large: fn(v))
        print(f"{name:40} {t1 * 1e6:8.1f}us {t32 * 1e6:8.1f}us {t32 / t1:6.1f}x")


if __name__ == "__main__":
    main()
