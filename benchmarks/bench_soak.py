"""Issue #17's memory soak: ``python benchmarks/bench_soak.py [--quick]``.

The same as ``recgym bench --soak``: 10,000 lifetimes of 50 sessions through KuaiRand-v1's lifetime
vector env; see :func:`recgym.bench.soak` for what is measured and ``docs/performance.md`` for the results.
"""

import sys

from recgym.bench import main

if __name__ == "__main__":
    raise SystemExit(main(["--soak", *sys.argv[1:]]))
