"""Command line: ``python -m benchmarks [NAME ...] [--quick] [--report] [--threads N] [--device D]``.

Examples::

    python -m benchmarks                  # throughput, quality, iwae → benchmarks/results/, then the page
    python -m benchmarks book --build     # chapter execution times and the `make book` time (minutes)
    python -m benchmarks book --durations LOG   # chapter times from a `make test` log (strict nbval)
    python -m benchmarks --report         # only rewrite book/benchmarks.md from the committed JSON
    python -m benchmarks --quick          # tiny sizes, into a temporary folder (what CI smoke-tests)
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import ALL, DEFAULT

QUICK: dict[str, dict[str, Any]] = {
    "throughput": {"datasets": ("mnist-5k",), "limit": 256, "epochs": {"mnist-5k": 1},
                   "rounds": {"mnist-5k": 1}, "gemm_min_time": 0.002, "profile_dataset": None},
    "throughput_1t": {"datasets": ("mnist-5k",), "limit": 256, "epochs": {"mnist-5k": 1},
                      "rounds": {"mnist-5k": 1}, "gemm_min_time": 0.002},
    "quality": {"limit": 256, "epochs": 1, "seeds": (0, 1), "n_samples": 1},
    "iwae": {"k": 20, "n": 20, "chunk_sizes": (5, 20), "default_malloc_chunks": (20,),
             "batch_size": 10, "train_epochs": 1, "train_limit": 256},
    "book": {"execute": False},
    "redraw": {},
}
"""Arguments of each benchmark's ``run`` for a smoke run that takes seconds."""


def run_benchmark(name: str, *, quick: bool, out: Path, threads: int | None = None, device: str | None = None,
                  **kwargs: Any) -> Path:
    """Run one benchmark, validate its result and write it to ``out``; return the file."""
    from . import common

    module = importlib.import_module(f"benchmarks.{name}")
    args: dict[str, Any] = dict(QUICK[name]) if quick else {}
    args.update(kwargs)
    if name != "book":
        args["device"] = device
    result = module.run(threads=threads, quick=quick, **args)
    module.validate(result)
    return common.write(result, out)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the benchmarks, write the results and (for full runs) the page."""
    from . import common, report

    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(ALL)} (default: {' '.join(DEFAULT)})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds), results to a temp folder")
    parser.add_argument("--report", action="store_true",
                        help="rewrite the results block of book/benchmarks.md (alone: from the JSON only)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: CUDA when present)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--page", type=Path, default=None,
                        help="page to rewrite (default book/benchmarks.md)")
    parser.add_argument("--build", action="store_true", help="book: also time `make book`'s build")
    parser.add_argument("--durations", type=Path, default=None,
                        help="book: read chapter times from a `make test` log instead of executing")
    args = parser.parse_args(argv)
    for name in args.names:
        if name not in ALL:
            parser.error(f"unknown benchmark {name!r}; choose from {', '.join(ALL)}")

    out = args.out if args.out is not None else (Path(tempfile.mkdtemp(prefix="vae-bench-")) if args.quick
                                                  else common.RESULTS)
    names = args.names or ([] if args.report else list(DEFAULT))
    for name in names:
        common.log(f"== {name}")
        extra: dict[str, Any] = {}
        if name == "book" and args.build:
            extra["build"] = True
        if name == "book" and args.durations is not None:
            extra["durations_log"] = args.durations
        path = run_benchmark(name, quick=args.quick, out=out, threads=args.threads, device=args.device,
                             **extra)
        print(f"{name}: {path}")
    if args.report or (names and not args.quick and out == common.RESULTS):
        changed = report.update_page(args.page, out)
        print(f"{args.page or report.PAGE}: {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
