"""``python -m recgym``: the same command line as the ``recgym`` console script."""

from recgym.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
