"""Simulator and training throughput of recgym: ``python benchmarks/bench_env.py [--quick]``.

The same as ``recgym bench``; see :mod:`recgym.bench` for what is measured and
``docs/performance.md`` for the results.
"""

from recgym.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
