"""Book execution time: how long each chapter takes to execute from a fresh kernel (optional: minutes).

- **execute** (default): each notebook under ``notebooks/`` is run by
  ``jupyter nbconvert --to notebook --execute`` in a fresh kernel, in file order, writing its output to
  a temporary folder (the committed notebooks are not touched). ``VAE_CORE_CACHE`` points at a new,
  empty folder shared by the run, so trained models are computed, not loaded from an earlier build: a
  clean-cache execution as on a fresh machine, where the first chapter that needs a shared model
  trains it and later chapters load it.
  Each chapter should take at most :data:`CHAPTER_TARGET_SECONDS` on 2 cores.

With ``build=True`` it also times ``make book``'s ``jupyter-book build`` of a temporary copy of the
repository's tracked files: it renders the outputs stored with the notebooks (no execution).

Run: ``python -m benchmarks book [--build]`` (not part of the default run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import common

NAME = "book"
CHAPTER_TARGET_SECONDS = 180.0
"""Each chapter executes within 3 minutes on 2 cores from an empty model cache."""


def notebooks(folder: str | os.PathLike | None = None) -> list[Path]:
    """The chapters, in file order (``notebooks/*.ipynb`` under the repository root by default)."""
    return sorted(Path(folder if folder is not None else common.ROOT / "notebooks").glob("*.ipynb"))


def _bin(name: str) -> str:
    """An executable of this Python environment (the venv's jupyter), else from PATH."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def _env(cache: Path, threads: int | None) -> dict[str, str]:
    env = dict(os.environ, VAE_CORE_CACHE=str(cache), MPLBACKEND="Agg", PYDEVD_DISABLE_FILE_VALIDATION="1")
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def execute_notebook(path: Path, out_dir: Path, env: dict[str, str], timeout: float = 1800) -> dict[str, Any]:
    """Execute one notebook in a fresh kernel with nbconvert; return {notebook, seconds, ok, error}."""
    cmd = [_bin("jupyter"), "nbconvert", "--to", "notebook", "--execute", f"--output-dir={out_dir}",
           f"--ExecutePreprocessor.timeout={int(timeout)}", str(path)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=path.parent, env=env, capture_output=True, text=True,
                              timeout=timeout + 60)
        ok, error = proc.returncode == 0, (None if proc.returncode == 0 else proc.stderr[-2000:])
    except subprocess.TimeoutExpired:
        ok, error = False, f"timed out after {timeout + 60:.0f} s"
    return {"notebook": path.name, "seconds": round(time.perf_counter() - t0, 2), "ok": ok, "error": error}


_DURATION = re.compile(r"^\s*([0-9.]+)s (?:setup|call|teardown)\s+(?:\S*/)?([^/\s]+\.ipynb)::")


def from_durations(text: str) -> dict[str, float]:
    """Seconds per notebook from a strict-nbval log run with ``--durations=0`` (the sum of its cells'
    setup, call and teardown times), e.g. the log of ``make test``: {notebook file name: seconds}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _DURATION.match(line)
        if m:
            out[m.group(2)] = out.get(m.group(2), 0.0) + float(m.group(1))
    if not out:
        raise ValueError("no notebook cell durations in the log: was it run with --nbval --durations=0?")
    return {k: round(v, 1) for k, v in sorted(out.items())}


def time_build(timeout: float = 3600, threads: int | None = None) -> dict[str, Any]:
    """Seconds of ``jupyter-book build`` (what ``make book`` runs: it renders the stored outputs) of a
    temporary copy of the tracked files (+ ``_vendor``), with an empty model cache."""
    files = subprocess.run(["git", "ls-files"], cwd=common.ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    with tempfile.TemporaryDirectory(prefix="vae-book-build-") as tmp:
        root = Path(tmp) / "book"
        for name in files:
            src = common.ROOT / name
            if src.is_file():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, root / name)
        for extra in ("_vendor",):
            if (common.ROOT / extra).exists():
                shutil.copytree(common.ROOT / extra, root / extra, symlinks=True)
        env = _env(Path(tmp) / "model-cache", threads)
        cmd = [_bin("jupyter-book"), "build", str(root), "--path-output", str(root), "-W", "-n",
               "--keep-going"]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
            ok, error = proc.returncode == 0, (None if proc.returncode == 0 else proc.stdout[-2000:])
        except subprocess.TimeoutExpired:
            ok, error = False, f"timed out after {timeout:.0f} s"
        return {"seconds": round(time.perf_counter() - t0, 1), "ok": ok, "error": error,
                "notebooks_tracked": sorted(f for f in files if f.endswith(".ipynb"))}


def run(paths: Sequence[str | os.PathLike] | None = None, *, execute: bool = True, build: bool = False,
        threads: int | None = None, quick: bool = False, timeout: float = 1800,
        durations_log: str | os.PathLike | None = None) -> dict[str, Any]:
    """Time the chapters (see the module docstring); return the envelope.

    paths: notebooks to execute (default :func:`notebooks`). threads: OMP/MKL threads for the kernels
    (default: left to torch, one per core). build: also time ``make book``'s ``jupyter-book build``.
    durations_log: instead of executing, read the times from the log of a ``make test`` run (strict
    nbval with ``--durations=0``; two notebooks side by side, one torch thread each) — the way CI runs
    them, from an empty model cache on a fresh clone.
    """
    if durations_log is not None:
        import torch

        times = from_durations(Path(durations_log).read_text())
        machine = common.machine_info(torch.device("cpu"))
        machine["torch_threads"] = 1
        runs = [{"notebook": name, "seconds": sec, "ok": True, "error": None} for name, sec in times.items()]
        results = {"notebooks": runs, "total_seconds": round(sum(times.values()), 1), "build": None,
                   "all_ok": True, "chapter_target_seconds": CHAPTER_TARGET_SECONDS,
                   "over_target": [r["notebook"] for r in runs if r["seconds"] > CHAPTER_TARGET_SECONDS]}
        settings = {"notebooks": list(times), "execute": False, "build": False,
                    "how": "make test on a fresh clone: strict nbval, 2 notebooks side by side, one torch "
                           "thread each, empty VAE_CORE_CACHE; seconds = sum of the cells' times",
                    "timeout_s": timeout}
        return common.envelope(NAME, machine, settings, results, quick=quick)
    import torch

    nbs = [Path(p) for p in paths] if paths is not None else notebooks()
    machine = common.machine_info(torch.device("cpu"))
    if threads is not None:
        machine["torch_threads"] = threads
    results: dict[str, Any] = {"notebooks": [], "total_seconds": None, "build": None}
    if execute:
        with tempfile.TemporaryDirectory(prefix="vae-book-exec-") as tmp:
            env = _env(Path(tmp) / "model-cache", threads)
            for nb in nbs:
                results["notebooks"].append(execute_notebook(nb, Path(tmp), env, timeout))
                r = results["notebooks"][-1]
                common.log(f"  book {r['notebook']}: {r['seconds']:.1f} s{'' if r['ok'] else ' FAILED'}")
        results["total_seconds"] = round(sum(r["seconds"] for r in results["notebooks"]), 1)
        results["all_ok"] = all(r["ok"] for r in results["notebooks"])
    if build:
        results["build"] = time_build(threads=threads)
        common.log(f"  book build: {results['build']['seconds']:.0f} s")
    results["chapter_target_seconds"] = CHAPTER_TARGET_SECONDS
    results["over_target"] = [r["notebook"] for r in results["notebooks"]
                              if r["seconds"] > CHAPTER_TARGET_SECONDS]
    settings = {"notebooks": [p.name for p in nbs], "execute": execute, "build": build,
                "how": "jupyter nbconvert --execute, fresh kernel per notebook, empty VAE_CORE_CACHE",
                "timeout_s": timeout}
    return common.envelope(NAME, machine, settings, results, quick=quick)


def validate(result: dict[str, Any]) -> None:
    """Raise ValueError if ``result`` is not a well-formed book result."""
    common.validate(result, NAME)
    res = result["results"]
    common.require(res, ("notebooks", "total_seconds", "build", "chapter_target_seconds", "over_target"),
                   "results")
    for r in res["notebooks"]:
        common.require(r, ("notebook", "seconds", "ok"), "notebook run")
