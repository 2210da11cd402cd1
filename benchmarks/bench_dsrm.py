"""DSRM benchmark: does the purified state recover the TRUE interest? ``recgym bench dsrm``.

    python benchmarks/bench_dsrm.py [--quick]

See :func:`recgym.bench.dsrm_main` for the experiments and docs/dsrm.md for the results.
"""

import sys

from recgym.bench import main

if __name__ == "__main__":
    raise SystemExit(main(["dsrm", *sys.argv[1:]]))
