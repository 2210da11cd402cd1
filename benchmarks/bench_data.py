"""Cold and cached ``data_dir`` loads of a generated KuaiRec-schema folder: ``recgym bench data``.

    python benchmarks/bench_data.py [--data-dir DIR] [--users 1411] [--items 3327] [--cached-rounds 3]

See :func:`recgym.bench.data_main` for what is measured.
"""

import sys

from recgym.bench import main

if __name__ == "__main__":
    raise SystemExit(main(["data", *sys.argv[1:]]))
