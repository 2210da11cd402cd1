"""Per-user cost of stepping the user population (10 vs 1,000 users): ``recgym bench population``.

    python benchmarks/bench_population.py [--quick] [--world kuairec] [--sizes 10 1000]

See :func:`recgym.bench.population_main` for what is measured.
"""

import sys

from recgym.bench import main

if __name__ == "__main__":
    raise SystemExit(main(["population", *sys.argv[1:]]))
