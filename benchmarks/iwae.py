"""Evaluation speed and memory: the IWAE log-likelihood with k = 5000 on 1,000 test images.

:func:`vae_core.evaluate.iwae_log_likelihood` draws the k latent samples of a batch of images at once
(k × batch × z_dim: small) but decodes them ``chunk_size`` at a time, so its largest tensors are
(chunk_size, batch, 784): memory should grow with the chunk size and not with k. This benchmark
shows it: for each chunk size, a fresh Python process loads a trained 784-400-20 VAE (trained here
for a few epochs on the bundled digits, since an untrained model's log-likelihood means little),
warms up, then evaluates the 1,000 statically binarized ``mnist-5k`` test digits and reports

- wall-clock seconds;
- peak memory: on CPU the process's peak resident set size during the evaluation (tracemalloc does
  not see torch's allocations): the kernel's peak mark (VmHWM) is reset just before it (Linux; else
  ``resource.getrusage(...).ru_maxrss``, the whole process's peak), and the resident size before it
  is subtracted, giving the "extra" memory the evaluation needed; on CUDA
  ``torch.cuda.max_memory_allocated`` minus what was allocated before;
- that extra memory in units of one (chunk_size × batch_size × 784) float32 tensor, which should stay
  roughly constant (a few such tensors are alive at once) while the chunk size changes tenfold;
- the mean log-likelihood, and the largest difference between chunk sizes (the noise does not depend
  on the chunk size, so the estimates agree up to float rounding);
- the process's system (kernel) seconds and minor page faults during the evaluation. Each chunk size
  runs with malloc's freed memory kept in the process (``GLIBC_TUNABLES`` =
  :data:`benchmarks.common.GLIBC_MALLOC_TUNABLES`, as ``make`` sets it), and the sizes of
  ``default_malloc_chunks`` once more with glibc's defaults, which return large freed blocks to the
  kernel: the page faults of re-mapping them are what made larger chunks slower.

Run: ``python -m benchmarks iwae`` (part of the default ``python -m benchmarks``).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import common

NAME = "iwae"
DEFAULT_CHUNKS = (10, 100, 1000)
DEFAULT_MALLOC_CHUNKS = (10, 1000)  # run again with glibc's default malloc settings


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (e.g. "VmRSS", "VmHWM") in MiB; None where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (VmHWM; Linux ≥ 4.0: write 5 to
    /proc/self/clear_refs), so the peak measured next belongs to what runs next. False if impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_mb("VmHWM") is not None


def _peak_rss_mb(reset_worked: bool) -> float:
    """Peak RSS in MiB: VmHWM since the last reset, else ru_maxrss (the whole process's peak)."""
    if reset_worked:
        return _status_mb("VmHWM") or 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: dict[str, Any]) -> dict[str, Any]:
    """One measurement, in a fresh process (called by ``python -m benchmarks.iwae --worker JSON``)."""
    from vae_core import data
    from vae_core.evaluate import iwae_log_likelihood
    from vae_core.models import VAE

    torch.set_num_threads(args["threads"])
    device = torch.device(args["device"])
    model = VAE(784, 400, 20)
    model.load_state_dict(torch.load(args["state"], weights_only=True))
    model.to(device).eval()
    images = data.load(args["dataset"], "test").images[:args["n"]]
    x = data.static_binarize(data.to_unit_float(images).to(device), seed=0)
    k, batch, chunk = args["k"], args["batch_size"], args["chunk_size"]
    iwae_log_likelihood(model, x[:1], k=chunk, batch_size=1, chunk_size=chunk)  # warm-up (1 image)
    common.synchronize(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) / 2**20
        method = "torch.cuda.max_memory_allocated - memory_allocated before"
    else:
        reset = _reset_peak_rss()
        base = _status_mb("VmRSS") if reset else _peak_rss_mb(False)
        method = ("peak RSS (VmHWM, reset before the run) - RSS before" if reset
                  else "ru_maxrss after - ru_maxrss before")
    rss_before = round(_status_mb("VmRSS") or 0.0, 1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    log_px = iwae_log_likelihood(model, x, k=k, batch_size=batch, chunk_size=chunk, seed=0)
    common.synchronize(device)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _peak_rss_mb(reset)
    torch.save(log_px.cpu(), args["out"])
    unit = chunk * batch * 784 * 4 / 2**20
    return {"chunk_size": chunk, "malloc": args["malloc"], "seconds": round(seconds, 3),
            "system_seconds": round(after.ru_stime - usage.ru_stime, 2),
            "minor_page_faults": after.ru_minflt - usage.ru_minflt,
            "memory": method, "peak_mb": round(peak, 1), "before_mb": round(base, 1),
            "extra_mb": round(peak - base, 1), "rss_before_mb": rss_before,
            "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "chunk_tensor_mb": round(unit, 2),
            "extra_in_chunk_tensors": round((peak - base) / unit, 2),
            "mean_log_likelihood": round(float(log_px.mean()), 4),
            "images_per_s": round(len(x) / seconds, 2)}


def _memory_model(runs: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """Extra memory ≈ fixed_mb + mb_per_chunk_sample · chunk_size, through the smallest and largest
    chunk sizes (None with fewer than two). The fixed part holds what does not depend on the chunk
    (the batch's k noise vectors, the log-weights); nothing grows with k but those small tensors."""
    if len(runs) < 2 or runs[-1]["chunk_size"] == runs[0]["chunk_size"]:
        return None
    lo, hi = runs[0], runs[-1]
    slope = (hi["extra_mb"] - lo["extra_mb"]) / (hi["chunk_size"] - lo["chunk_size"])
    return {"fixed_mb": round(lo["extra_mb"] - slope * lo["chunk_size"], 1),
            "mb_per_chunk_sample": round(slope, 4)}


def _spawn(args: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}  # "default": glibc's own
    if args["malloc"] == "kept":
        env["GLIBC_TUNABLES"] = common.GLIBC_MALLOC_TUNABLES
    proc = subprocess.run([sys.executable, "-m", "benchmarks.iwae", "--worker", json.dumps(args)],
                          cwd=common.ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"IWAE worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(*, k: int = 5000, n: int = 1000, chunk_sizes: Sequence[int] = DEFAULT_CHUNKS,
        default_malloc_chunks: Sequence[int] = DEFAULT_MALLOC_CHUNKS, batch_size: int = 100,
        train_epochs: int = 5, train_limit: int | None = None, dataset: str = "mnist-5k",
        threads: int | None = None,
        device: str | None = None, quick: bool = False, timeout: float = 3600) -> dict[str, Any]:
    """Train a model, then measure IWAE(k) on ``n`` test images once per chunk size, each in a fresh
    process; return the envelope (see :mod:`benchmarks.common`). train_limit: train on only the first
    ``train_limit`` images (smoke test)."""
    from vae_core import data
    from vae_core.models import VAE
    from vae_core.train import fit

    dev = common.resolve_device(device)
    threads = threads if threads is not None else common.default_threads()
    with common.torch_threads(threads):
        machine = common.machine_info(dev)
        torch.manual_seed(0)
        model = VAE(784, 400, 20)
        fit(model, data.load(dataset, "train").images[:train_limit], epochs=train_epochs, seed=0, device=dev,
            progress=False)
        runs = []
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp) / "model.pt"
            torch.save({k_: v.cpu() for k_, v in model.state_dict().items()}, state)
            estimates = []
            plan = [(c, "kept") for c in chunk_sizes] + [(c, "default") for c in default_malloc_chunks]
            for chunk, malloc in plan:
                out = Path(tmp) / f"log_px_{chunk}_{malloc}.pt"
                runs.append(_spawn({"state": str(state), "out": str(out), "threads": threads,
                                    "device": str(dev), "dataset": dataset, "n": n, "k": k,
                                    "batch_size": batch_size, "chunk_size": chunk, "malloc": malloc},
                                   timeout))
                estimates.append(torch.load(out, weights_only=True))
                common.log(f"  iwae chunk {chunk} (malloc {malloc}): {runs[-1]['seconds']:.1f} s, "
                           f"system {runs[-1]['system_seconds']} s, extra {runs[-1]['extra_mb']} MB")
            n_eval = len(estimates[0])
            disagreement = max(float((e - estimates[0]).abs().max()) for e in estimates)
    kept = [r for r in runs if r["malloc"] == "kept"]
    ratio = kept[-1]["extra_mb"] / kept[0]["extra_mb"] if len(kept) > 1 and kept[0]["extra_mb"] > 0 else None
    results = {"runs": runs, "n_images": n_eval,
               "max_abs_difference_between_chunk_sizes": disagreement,
               "memory_ratio_largest_over_smallest_chunk": None if ratio is None else round(ratio, 2),
               "memory_model": _memory_model(kept)}
    settings = {"k": k, "n": n, "chunk_sizes": list(chunk_sizes),
                "default_malloc_chunks": list(default_malloc_chunks),
                "malloc": {"kept": f"GLIBC_TUNABLES={common.GLIBC_MALLOC_TUNABLES}",
                           "default": "glibc's defaults (GLIBC_TUNABLES unset)"},
                "batch_size": batch_size,
                "dataset": dataset, "test_data": f"{dataset} test split, statically binarized (seed 0)",
                "model": f"a 784-400-20 Bernoulli VAE trained for {train_epochs} epochs by `fit` on the "
                         f"{dataset} training images (dynamic binarization, seed 0)",
                "device": str(dev), "process": "one fresh process per chunk size and malloc setting"}
    return common.envelope(NAME, machine, settings, results, quick=quick)


def validate(result: dict[str, Any]) -> None:
    """Raise ValueError if ``result`` is not a well-formed IWAE result."""
    common.validate(result, NAME)
    res = result["results"]
    common.require(res, ("runs", "n_images", "max_abs_difference_between_chunk_sizes"), "results")
    if not res["runs"]:
        raise ValueError("no IWAE run")
    for r in res["runs"]:
        common.require(r, ("chunk_size", "malloc", "seconds", "system_seconds", "minor_page_faults",
                           "peak_mb", "extra_mb", "mean_log_likelihood"), "run")
        if not r["seconds"] > 0:
            raise ValueError("IWAE seconds must be > 0")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
    else:
        sys.exit("usage: python -m benchmarks iwae  (this module's entry point is the worker)")
