"""What every benchmark shares: the machine and version record, the JSON envelope, timing statistics.

Every result file under ``benchmarks/results/`` is one JSON object, the *envelope*::

    {"benchmark": "train", "schema": 1, "date": "2026-…Z", "quick": false,
     "machine": {...}, "versions": {...}, "settings": {...}, "results": {...}, "notes": [...]}

``machine`` says where it ran (CPU model, cores, RAM, torch threads, device and GPU name, the load
average before and after, since other processes on a shared machine slow a benchmark down);
``versions`` which software (python, torch, torchvision, numpy, vae_core, git commit); ``settings``
the benchmark's arguments; ``results`` its measurements. :func:`validate` checks this shape (the CI
smoke test and the test of the committed files use it).

Nothing here runs at import time: the record is taken when a benchmark calls :func:`envelope`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

SCHEMA = 1
"""Version of the envelope layout; bump it when a field changes meaning."""
ROOT = Path(__file__).resolve().parent.parent
"""The repository root (benchmarks/ lives directly under it)."""
GLIBC_MALLOC_TUNABLES = "glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=1073741824"
"""The ``GLIBC_TUNABLES`` value the Makefile exports (tests/test_benchmarks.py checks they agree):
glibc's malloc keeps freed blocks of up to 1 GiB in the process instead of returning them to the
kernel. By default blocks above its mmap threshold (at most 32 MiB) are unmapped when freed and the
top of the heap is trimmed; a loop that allocates the same large temporaries at every step (IWAE's
decoder chunks, the quadrature grid's blocks) then page-faults them in again each time (the IWAE
benchmark measures both settings)."""
RESULTS = Path(__file__).resolve().parent / "results"
"""Where ``python -m benchmarks`` writes (and the book page reads) the committed results."""
ENVELOPE_KEYS = ("benchmark", "schema", "date", "quick", "machine", "versions", "settings", "results",
                 "notes")
MACHINE_KEYS = ("cpu", "cores", "ram_gb", "torch_threads", "device", "device_name", "cuda_available",
                "load_average_start", "load_average_end", "platform")
VERSION_KEYS = ("python", "torch", "torchvision", "numpy", "vae_core", "git_commit")


# --------------------------------------------------------------------------------------------------
# Machine, versions, device
# --------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def ram_gb() -> float | None:
    """Total physical memory in GiB (from /proc/meminfo), or None where unavailable."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (what ``uptime`` shows), or None on Windows."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch.device; None means CUDA when available, else CPU (decided at call time)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_name(device: torch.device) -> str:
    """The GPU's name for a CUDA device, else the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (a no-op on CPU), so a timer measures the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine_info(device: torch.device) -> dict[str, Any]:
    """Where a benchmark runs; ``load_average_end`` is filled in by :func:`envelope`."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": ram_gb(),
        "torch_threads": torch.get_num_threads(),
        "device": device.type,
        "device_name": device_name(device),
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_start": load_average(),
        "load_average_end": None,
        "platform": platform.platform(),
    }


def git_commit() -> str | None:
    """The repository's HEAD commit (short), with ``+dirty`` if tracked files are modified; None
    outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def versions() -> dict[str, Any]:
    """Versions of the software that determines the numbers."""
    import numpy
    import torchvision

    import vae_core

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "vae_core": vae_core.__version__,
        "git_commit": git_commit(),
        "mkl": torch.backends.mkl.is_available(),
        "cuda": torch.version.cuda,
    }


@contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Fix torch's intra-op thread count for the block (None: leave it) and restore it after.

    Yields the number in effect. A benchmark must fix and report it: on a machine that other processes
    keep busy, more threads than free cores make OpenMP threads wait on each other, and every op slows
    down many times over.
    """
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def default_threads() -> int:
    """The thread count benchmarks use unless told otherwise: one per core (``os.cpu_count()``)."""
    return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------------
# The envelope
# --------------------------------------------------------------------------------------------------


def envelope(benchmark: str, machine: Mapping[str, Any], settings: Mapping[str, Any],
             results: Mapping[str, Any], *, quick: bool, notes: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON object a benchmark writes (see the module docstring). Records the load average at the
    end of the run and adds a note when the machine was busier than its core count."""
    machine = dict(machine)
    machine["load_average_end"] = load_average()
    notes = list(notes)
    cores = machine.get("cores") or 1
    loads = [x for x in (machine.get("load_average_start") or [])[:1] + (machine.get("load_average_end")
                                                                         or [])[:1]]
    if loads and max(loads) > 1.25 * cores:
        notes.append(f"the machine was shared with other work: 1-minute load average "
                     f"{max(loads):.1f} on {cores} cores during the run; absolute speeds are lower "
                     "than on an idle machine")
    return {
        "benchmark": benchmark,
        "schema": SCHEMA,
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "quick": bool(quick),
        "machine": machine,
        "versions": versions(),
        "settings": dict(settings),
        "results": dict(results),
        "notes": notes,
    }


def validate(result: Mapping[str, Any], benchmark: str | None = None) -> None:
    """Raise ValueError naming the first problem if ``result`` is not a valid envelope (of
    ``benchmark``, if given). Benchmark-specific fields are checked by each module's ``validate``."""
    for key in ENVELOPE_KEYS:
        if key not in result:
            raise ValueError(f"result has no {key!r} field")
    if benchmark is not None and result["benchmark"] != benchmark:
        raise ValueError(f"expected a {benchmark!r} result, got {result['benchmark']!r}")
    if result["schema"] != SCHEMA:
        raise ValueError(f"schema {result['schema']!r}, expected {SCHEMA}")
    _dt.datetime.fromisoformat(result["date"])
    for key in MACHINE_KEYS:
        if key not in result["machine"]:
            raise ValueError(f"machine has no {key!r} field")
    if not isinstance(result["machine"]["torch_threads"], int) or result["machine"]["torch_threads"] < 1:
        raise ValueError("machine.torch_threads must be a positive int")
    for key in VERSION_KEYS:
        if key not in result["versions"]:
            raise ValueError(f"versions has no {key!r} field")
    for key in ("settings", "results"):
        if not isinstance(result[key], Mapping):
            raise ValueError(f"{key} must be an object")
    if not isinstance(result["notes"], list) or not all(isinstance(n, str) for n in result["notes"]):
        raise ValueError("notes must be a list of strings")
    json.dumps(result, allow_nan=False)  # plain JSON: no NaN/inf, no tensors


def require(mapping: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    """Raise ValueError if any of ``keys`` is missing from ``mapping`` (``where`` names it)."""
    for key in keys:
        if key not in mapping:
            raise ValueError(f"{where} has no {key!r} field")


def write(result: Mapping[str, Any], out_dir: str | os.PathLike | None = None) -> Path:
    """Write ``result`` to ``<out_dir>/<benchmark>.json`` (default :data:`RESULTS`) atomically;
    return the path."""
    out = Path(out_dir) if out_dir is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result['benchmark']}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def read(benchmark: str, out_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The stored result of ``benchmark`` (None if it was never run)."""
    path = (Path(out_dir) if out_dir is not None else RESULTS) / f"{benchmark}.json"
    return json.loads(path.read_text()) if path.exists() else None


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def summary(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """Median, min, max, the quartiles and every value of a list of measurements (rounded)."""
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("no measurements")
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else (xs[0],) * 3

    def r(x: float) -> float:
        return float(f"{x:.{digits}g}")

    return {"median": r(statistics.median(xs)), "min": r(xs[0]), "max": r(xs[-1]), "q1": r(q1),
            "q3": r(q3), "n": len(xs), "values": [r(float(v)) for v in values]}


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(wall-clock seconds, return value) of ``fn()``, synchronising the GPU before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    value = fn()
    synchronize(device)
    return time.perf_counter() - t0, value


def log(message: str) -> None:
    """Progress line on stderr (benchmarks print nothing on stdout but the final summary)."""
    print(message, file=sys.stderr, flush=True)
