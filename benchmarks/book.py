"""Book execution time: how long each chapter takes to execute from a fresh kernel (optional: minutes).

Two sources, both recorded when available:

- **execute** (default): each notebook under ``notebooks/`` is run by
  ``jupyter nbconvert --to notebook --execute`` in a fresh kernel, in file order, writing its output to
  a temporary folder (the committed notebooks are not touched). ``VAE_CORE_CACHE`` points at a new,
  empty folder shared by the run, so trained models are computed, not loaded from an earlier build: a
  clean-cache execution as on a fresh machine, where the first chapter that needs a shared model
  trains it and later chapters load it.
- **jupyter-cache**: the execution seconds that the last ``make book`` recorded in
  ``_build/.jupyter_cache`` for the current version of each notebook (no execution needed).

With ``build=True`` it also times a whole ``jupyter-book build`` (executing every chapter and
rendering the HTML) of a temporary copy of the repository's tracked files, with an empty execution
cache and an empty model cache: the issue's "whole book executes and builds in ≤ 10 minutes from a
clean cache".

Run: ``python -m benchmarks book [--build]`` (not part of the default run).
"""

from __future__ import annotations

import os
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
TARGET_SECONDS = 600.0


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


def from_jupyter_cache(paths: Sequence[Path], cache_dir: Path | None = None) -> dict[str, Any] | None:
    """Execution seconds recorded by the last book build for the *current* content of each notebook
    (None if there is no cache; a notebook whose current version was never executed gets None)."""
    cache_dir = cache_dir if cache_dir is not None else common.ROOT / "_build" / ".jupyter_cache"
    if not cache_dir.exists():
        return None
    try:
        from jupyter_cache import get_cache
    except ImportError:
        return None
    cache = get_cache(str(cache_dir))
    out: dict[str, Any] = {}
    for path in paths:
        try:
            record = cache.match_cache_file(str(path))
        except Exception:  # KeyError (no match) or a notebook the cache cannot read
            out[path.name] = None
            continue
        seconds = (record.data or {}).get("execution_seconds")
        out[path.name] = {"seconds": round(float(seconds), 2) if seconds is not None else None,
                          "executed_at": record.created.isoformat(timespec="seconds")}
    return out


def time_build(timeout: float = 3600, threads: int | None = None) -> dict[str, Any]:
    """Seconds of ``jupyter-book build`` of a temporary copy of the tracked files (+ ``_vendor``), with
    empty execution and model caches."""
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
        threads: int | None = None, quick: bool = False, timeout: float = 1800) -> dict[str, Any]:
    """Time the chapters (see the module docstring); return the envelope.

    paths: notebooks to execute (default :func:`notebooks`). threads: OMP/MKL threads for the kernels
    (default: left to torch, one per core). build: also time a clean full ``jupyter-book build``.
    """
    import torch

    nbs = [Path(p) for p in paths] if paths is not None else notebooks()
    machine = common.machine_info(torch.device("cpu"))
    if threads is not None:
        machine["torch_threads"] = threads
    results: dict[str, Any] = {"notebooks": [], "total_seconds": None,
                               "jupyter_cache": from_jupyter_cache(nbs), "build": None}
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
    total = results["build"]["seconds"] if results["build"] else results["total_seconds"]
    results["target_seconds"] = TARGET_SECONDS
    results["target_met"] = bool(total is not None and total <= TARGET_SECONDS)
    settings = {"notebooks": [p.name for p in nbs], "execute": execute, "build": build,
                "how": "jupyter nbconvert --execute, fresh kernel per notebook, empty VAE_CORE_CACHE",
                "timeout_s": timeout}
    return common.envelope(NAME, machine, settings, results, quick=quick)


def validate(result: dict[str, Any]) -> None:
    """Raise ValueError if ``result`` is not a well-formed book result."""
    common.validate(result, NAME)
    res = result["results"]
    common.require(res, ("notebooks", "total_seconds", "jupyter_cache", "build", "target_met"), "results")
    for r in res["notebooks"]:
        common.require(r, ("notebook", "seconds", "ok"), "notebook run")
