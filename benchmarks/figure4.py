"""The paper's Figure 4 on our system; the same as ``lester-dagster bench`` (see
``lester_dagster/bench/``):

    OPENBLAS_NUM_THREADS=1 python benchmarks/figure4.py --customers 10000 100000 1000000 \
        --repeat 3 [--quick] [--out benchmarks/results] [--data-cache DIR]
"""

from __future__ import annotations

import sys

from lester_dagster.bench.command import main

if __name__ == "__main__":
    sys.exit(main())
