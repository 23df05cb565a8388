"""Training throughput: the seed-style loop (A), ``vae_core.train.fit`` (B) and the compute floor (C),
side by side in one run, against the FLOP roofline of this machine.

For each data set, every round trains a fresh 784-400-20 Bernoulli VAE (batch 128, Adam 1e-3) for the
same number of epochs with A, then B, then C (interleaved: A B C A B C …, so a change in the
machine's load hits all three alike); each is timed as wall-clock seconds of the whole training call,
and samples/s = epochs · N / seconds. Ratios are taken within a round (paired), then the median over
rounds is reported with its range. See :mod:`benchmarks.loops` for exactly what A and C do; B is
``fit(model, images, epochs=…, progress=False)`` with the book's defaults (including dynamic
binarization, which A and C do not do: B does slightly *more* work).

The roofline: torch's FLOP counter (:func:`vae_core.summary.flops_per_example`) gives the FLOPs of one
example's forward+backward (matrix products only); × N is an epoch. The machine's matrix-product
speed is measured on the very products one training step makes — ``torch.mm`` at each layer's
forward, grad-input and grad-weight shapes for a batch of 128, e.g. (128×784)@(784×400) — so
"roofline seconds per epoch" is the time the step's matrix products alone take at measured speed,
and "fraction of roofline" = roofline seconds / measured seconds (1 = nothing but matrix products).
Each product's time is the fastest of several loops, and the products are timed at the start and again
after every round (the load of a shared machine changes); the roofline is the fastest of these, the
speed limit this machine showed in this run, at the run's thread count. A large square product is
timed at the start too, for comparison.

Also recorded: the time of one Adam step (default vs ``fused=True``) and a torch.profiler breakdown
(top operators by self time) of one epoch of B and of C on the bundled data, which shows where B's
extra time goes.

Run: ``python -m benchmarks throughput`` (part of the default ``python -m benchmarks``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from . import common
from .loops import SeedVAE, floor_batches, seed_dataset, seed_loader, train_floor, train_seed

NAME = "throughput"
BATCH_SIZE = 128
X_DIM, H_DIM, Z_DIM = 784, 400, 20
DEFAULT_EPOCHS = {"fashion-mnist": 1, "mnist-5k": 3}
"""Epochs per timed training call (60,000 or 4,000 training images)."""
DEFAULT_ROUNDS = {"fashion-mnist": 3, "mnist-5k": 5}
TARGETS = {"speedup_B_over_A_min": 3.0, "time_B_over_C_max": 1.15}
VARIANTS = {
    "A": "seed-style loop (pytorch/examples vae/main.py: torchvision Dataset + DataLoader, per-sample "
         "ToTensor, sigmoid + binary_cross_entropy(sum), Adam 1e-3, loss.item() each step)",
    "B": "vae_core.train.fit(progress=False) with the book's defaults (in-memory batches, dynamic "
         "binarization, seeded)",
    "C": "compute-only floor: forward + backward + Adam step on pre-loaded, pre-binarized, "
         "pre-shuffled tensors",
}


# --------------------------------------------------------------------------------------------------
# Matrix-product speed (the roofline)
# --------------------------------------------------------------------------------------------------


def step_gemms(batch: int = BATCH_SIZE, dims: Sequence[tuple[int, int]] | None = None
               ) -> list[dict[str, Any]]:
    """The matrix products of one training step of the MLP VAE, as torch's autograd issues them.

    For each Linear(in → out) on a batch of b: forward x @ Wᵀ (b×in)@(in×out); grad-weight gᵀ @ x
    (out×b)@(b×in); grad-input g @ W (b×out)@(out×in), except for the first layer (the data need no
    gradient). dims: the (in, out) of each Linear (default the VAE's five layers). Each entry:
    {"name", "m", "k", "n", "flops"} with flops = 2·m·k·n.
    """
    if dims is None:
        dims = [(X_DIM, H_DIM), (H_DIM, Z_DIM), (H_DIM, Z_DIM), (Z_DIM, H_DIM), (H_DIM, X_DIM)]
    out = []
    for i, (din, dout) in enumerate(dims):
        shapes = [("forward", batch, din, dout), ("grad_weight", dout, batch, din)]
        if i > 0:
            shapes.append(("grad_input", batch, dout, din))
        for kind, m, k, n in shapes:
            out.append({"name": f"layer{i + 1} {din}→{dout} {kind}", "m": m, "k": k, "n": n,
                        "flops": 2 * m * k * n})
    return out


def _gemm_operands(m: int, k: int, n: int, kind: str, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Operands laid out as autograd passes them (a transposed weight view, a transposed gradient)."""
    if kind.endswith("forward"):  # x (m×k) @ W.t() with W (n×k)
        return torch.randn(m, k, device=device), torch.randn(n, k, device=device).t()
    if kind.endswith("grad_weight"):  # g.t() (m×k) with g (k×m) @ x (k×n)
        return torch.randn(k, m, device=device).t(), torch.randn(k, n, device=device)
    return torch.randn(m, k, device=device), torch.randn(k, n, device=device)  # g @ W


def gemm_seconds(m: int, k: int, n: int, device: torch.device, kind: str = "", min_time: float = 0.05,
                 repeats: int = 5) -> list[float]:
    """Seconds per ``torch.mm`` of an (m×k)@(k×n) product: ``repeats`` measurements, each the mean
    over a loop of at least ``min_time`` seconds (after a warm-up)."""
    a, b = _gemm_operands(m, k, n, kind, device)
    for _ in range(3):
        torch.mm(a, b)
    common.synchronize(device)
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_time / 5:  # calibrate the loop length
        torch.mm(a, b)
        calls += 1
        common.synchronize(device)
    per_call = (time.perf_counter() - t0) / calls
    loops = max(1, math.ceil(min_time / per_call))
    results = []
    for _ in range(repeats):
        common.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(loops):
            torch.mm(a, b)
        common.synchronize(device)
        results.append((time.perf_counter() - t0) / loops)
    return results


def measure_roofline(device: torch.device, batch: int = BATCH_SIZE, min_time: float = 0.05,
                     repeats: int = 5, peak_size: int = 1024) -> dict[str, Any]:
    """Time every matrix product of a step (see :func:`step_gemms`) and a square ``peak_size`` one.

    Returns {"gemms": [{name, m, k, n, flops, seconds (median), gflops}], "step_flops",
    "step_gemm_seconds" (Σ medians: a step's products at measured speed), "gflops" (step_flops /
    step_gemm_seconds: the roofline), "peak": {size, gflops}}.
    """
    gemms = []
    for g in step_gemms(batch):
        secs = min(gemm_seconds(g["m"], g["k"], g["n"], device, g["name"], min_time, repeats))
        gemms.append({**g, "seconds": secs, "gflops": round(g["flops"] / secs / 1e9, 2)})
    step_flops = sum(g["flops"] for g in gemms)
    step_seconds = sum(g["seconds"] for g in gemms)
    s = peak_size
    peak = min(gemm_seconds(s, s, s, device, "square", min_time, repeats))
    return {"gemms": gemms, "step_flops": step_flops, "step_gemm_seconds": step_seconds,
            "gflops": round(step_flops / step_seconds / 1e9, 2),
            "peak": {"size": s, "gflops": round(2 * s**3 / peak / 1e9, 2)}}


def adam_step_ms(device: torch.device, repeats: int = 5, steps: int = 20) -> dict[str, Any]:
    """Milliseconds per ``optimizer.step()`` of Adam on the 784-400-20 VAE's 652,824 parameters:
    torch's default implementation vs ``fused=True`` (a median over ``repeats`` loops of ``steps``)."""
    from vae_core.models import VAE

    out: dict[str, Any] = {}
    times: dict[str, list[float]] = {"default": [], "fused": []}
    for _ in range(repeats):
        for kind in times:
            model = VAE(X_DIM, H_DIM, Z_DIM).to(device)
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            fused = {"fused": True} if kind == "fused" else {}
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, **fused)
            for _ in range(2):
                opt.step()
            seconds, _ = common.timed(lambda opt=opt: [opt.step() for _ in range(steps)], device)
            times[kind].append(seconds / steps * 1e3)
    for kind, values in times.items():
        out[kind] = common.summary(values)
    return out


# --------------------------------------------------------------------------------------------------
# The three loops, timed
# --------------------------------------------------------------------------------------------------


def _time_a(dataset: Any, epochs: int, device: torch.device, seed: int) -> float:
    torch.manual_seed(seed)
    model = SeedVAE()
    seconds, _ = common.timed(lambda: train_seed(model, seed_loader(dataset, BATCH_SIZE, device), epochs,
                                                 device), device)
    return seconds


def _time_b(images: torch.Tensor, epochs: int, device: torch.device, seed: int) -> float:
    from vae_core.models import VAE
    from vae_core.train import fit

    torch.manual_seed(seed)
    model = VAE(X_DIM, H_DIM, Z_DIM)
    seconds, _ = common.timed(lambda: fit(model, images, epochs=epochs, batch_size=BATCH_SIZE,
                                          seed=seed, device=device, progress=False), device)
    return seconds


def _time_c(batches: list[torch.Tensor], epochs: int, device: torch.device, seed: int) -> float:
    from vae_core.models import VAE

    torch.manual_seed(seed)
    model = VAE(X_DIM, H_DIM, Z_DIM).to(device)
    seconds, _ = common.timed(lambda: train_floor(model, batches, epochs), device)
    return seconds


def _profile(images: torch.Tensor, batches: list[torch.Tensor], device: torch.device, top: int = 12
             ) -> dict[str, Any]:
    """Top operators by self time (ms per step) in one epoch of B and of C."""
    from torch.profiler import ProfilerActivity, profile

    from vae_core.models import VAE
    from vae_core.train import fit

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    steps = len(batches)
    out: dict[str, Any] = {}
    for variant in ("B", "C"):
        torch.manual_seed(0)
        model = VAE(X_DIM, H_DIM, Z_DIM).to(device)
        with profile(activities=activities) as prof:
            if variant == "B":
                fit(model, images, epochs=1, batch_size=BATCH_SIZE, device=device, progress=False)
            else:
                train_floor(model, batches, 1)
            common.synchronize(device)
        rows = []
        for e in prof.key_averages():
            rows.append((e.self_cpu_time_total, e.key, e.count))
        rows.sort(reverse=True)
        total = sum(r[0] for r in rows)
        out[variant] = {
            "total_ms_per_step": round(total / 1e3 / steps, 3),
            "top": [{"op": key, "ms_per_step": round(t / 1e3 / steps, 3),
                     "calls_per_step": round(c / steps, 2)} for t, key, c in rows[:top]],
        }
    return out


def bench_dataset(dataset: str, epochs: int, rounds: int, device: torch.device, *, limit: int | None = None,
                  gemm_min_time: float = 0.05, profile_it: bool = False) -> dict[str, Any]:
    """Interleaved rounds on one data set: A, B, C, then the roofline's matrix products (see the
    module docstring), so that all four see the same machine load."""
    from vae_core import data
    from vae_core.models import VAE
    from vae_core.summary import flops_per_example
    from vae_core.train import prepare_data

    train_set = data.load(dataset, "train")
    images = train_set.images if limit is None else train_set.images[:limit]
    n = len(images)
    seed_ds = seed_dataset(dataset, "train", limit=limit)
    assert len(seed_ds) == n
    batches = floor_batches(prepare_data(images, X_DIM, device=device), BATCH_SIZE)

    # Warm-up (not timed): each loop once on up to 16 batches, so lazy initialisation is not measured.
    warm = min(n, 16 * BATCH_SIZE)
    _time_a(torch.utils.data.Subset(seed_ds, range(warm)), 1, device, 0)
    _time_b(images[:warm], 1, device, 0)
    _time_c(batches[:16], 1, device, 0)

    seconds: dict[str, list[float]] = {"A": [], "B": [], "C": []}
    rooflines: list[dict[str, Any]] = []
    for r in range(rounds):
        seconds["A"].append(_time_a(seed_ds, epochs, device, r))
        seconds["B"].append(_time_b(images, epochs, device, r))
        seconds["C"].append(_time_c(batches, epochs, device, r))
        rooflines.append(measure_roofline(device, min_time=gemm_min_time, repeats=3))
        common.log(f"  {dataset} round {r + 1}/{rounds}: " + ", ".join(
            f"{k} {epochs * n / v[-1]:,.0f}/s" for k, v in seconds.items())
            + f"; roofline {rooflines[-1]['gflops']} GFLOP/s")

    flops = flops_per_example(VAE(X_DIM, H_DIM, Z_DIM), batch_size=BATCH_SIZE)["forward_backward"]
    flops_per_epoch = flops * n
    gemm_flops_per_example = rooflines[0]["step_flops"] / BATCH_SIZE
    samples = {k: common.summary([epochs * n / s for s in v]) for k, v in seconds.items()}
    paired = {
        "speedup_B_over_A": [a / b for a, b in zip(seconds["A"], seconds["B"], strict=True)],
        "time_B_over_C": [b / c for b, c in zip(seconds["B"], seconds["C"], strict=True)],
        "speedup_C_over_A": [a / c for a, c in zip(seconds["A"], seconds["C"], strict=True)],
    }
    ratios = {k: common.summary(v, 3) for k, v in paired.items()}
    achieved = {k: round(flops_per_epoch * epochs / statistics.median(seconds[k]) / 1e9, 2) for k in seconds}
    # time per training example (µs), and what A and B spend beyond the floor C: the ceiling of any
    # speed-up over A is (C + A's overhead) / C
    us = {k: statistics.median(v) / (epochs * n) * 1e6 for k, v in seconds.items()}
    per_sample = {"us_per_example": {k: round(v, 2) for k, v in us.items()},
                  "overhead_us_per_example": {k: round(us[k] - us["C"], 2) for k in ("A", "B")}}
    result: dict[str, Any] = {
        "n_train": n,
        "epochs_per_round": epochs,
        "rounds": rounds,
        "seconds": {k: common.summary(v) for k, v in seconds.items()},
        "samples_per_s": samples,
        "ratios": ratios,
        "time_per_example": per_sample,
        "targets_met": {
            "speedup_B_over_A": ratios["speedup_B_over_A"]["median"] >= TARGETS["speedup_B_over_A_min"],
            "time_B_over_C": ratios["time_B_over_C"]["median"] <= TARGETS["time_B_over_C_max"],
        },
        "flops": {
            "per_example_forward_backward": flops,
            "per_example_step_gemms": gemm_flops_per_example,
            "per_epoch": flops_per_epoch,
            "roofline_gflops_per_round": [rf["gflops"] for rf in rooflines],
            "achieved_gflops": achieved,
        },
    }
    if profile_it:
        result["profile"] = _profile(images, batches, device)
    return result


def _add_roofline(d: dict[str, Any], gflops: float) -> None:
    """Fill in a data set's roofline numbers from the roofline speed ``gflops``."""
    f = d["flops"]
    f["roofline_gflops"] = gflops
    f["roofline_seconds_per_epoch"] = round(f["per_epoch"] / (gflops * 1e9), 4)
    f["fraction_of_roofline"] = {k: round(f["achieved_gflops"][k] / gflops, 3) for k in f["achieved_gflops"]}


def run(datasets: Sequence[str] = ("fashion-mnist", "mnist-5k"), *, epochs: dict[str, int] | None = None,
        rounds: dict[str, int] | None = None, threads: int | None = None, device: str | None = None,
        limit: int | None = None, quick: bool = False, gemm_min_time: float = 0.05,
        profile_dataset: str | None = "mnist-5k") -> dict[str, Any]:
    """Run the throughput benchmark; return its envelope (see :mod:`benchmarks.common`).

    datasets: names for :func:`vae_core.data.load` (a missing one is skipped with a note).
    epochs / rounds: per data set (defaults :data:`DEFAULT_EPOCHS`, :data:`DEFAULT_ROUNDS`; 1 / 2
    for a name not listed). threads: torch intra-op threads (default one per core). device: "cpu",
    "cuda" or None (CUDA when present). limit: use only the first ``limit`` training images (smoke
    test). profile_dataset: which data set gets the profiler breakdown (None: none).
    """
    from vae_core.data import DatasetNotAvailable

    dev = common.resolve_device(device)
    epochs = {**DEFAULT_EPOCHS, **(epochs or {})}
    rounds = {**DEFAULT_ROUNDS, **(rounds or {})}
    notes: list[str] = []
    with common.torch_threads(threads if threads is not None else common.default_threads()):
        machine = common.machine_info(dev)
        if dev.type == "cpu" and not torch.cuda.is_available():
            notes.append("no GPU on this machine: CPU only (the same command uses CUDA where present)")
        roofline = measure_roofline(dev, min_time=gemm_min_time)
        common.log(f"throughput: roofline {roofline['gflops']} GFLOP/s, peak {roofline['peak']['gflops']}")
        adam = adam_step_ms(dev, repeats=3 if quick else 5)
        per_dataset: dict[str, Any] = {}
        for name in datasets:
            try:
                per_dataset[name] = bench_dataset(name, epochs.get(name, 1), rounds.get(name, 2), dev,
                                                  limit=limit, gemm_min_time=gemm_min_time,
                                                  profile_it=name == profile_dataset)
            except DatasetNotAvailable as err:
                notes.append(f"{name} skipped: {err}")
    # The roofline is the fastest the machine was seen doing the step's products in this run (at the
    # start and after every round): a speed limit, so the best measurement, not a typical one.
    best = max([roofline["gflops"]] + [g for d in per_dataset.values()
                                        for g in d["flops"]["roofline_gflops_per_round"]])
    for d in per_dataset.values():
        _add_roofline(d, best)
    settings = {"datasets": list(datasets), "epochs": {d: epochs.get(d, 1) for d in datasets},
                "rounds": {d: rounds.get(d, 2) for d in datasets}, "batch_size": BATCH_SIZE, "lr": 1e-3,
                "model": f"VAE {X_DIM}-{H_DIM}-{Z_DIM} Bernoulli", "device": str(dev), "limit": limit,
                "order": "A B C per round (interleaved)", "variants": VARIANTS, "targets": TARGETS}
    results = {"datasets": per_dataset, "roofline": roofline, "adam_step_ms": adam}
    return common.envelope(NAME, machine, settings, results, quick=quick, notes=notes)


def validate(result: dict[str, Any], name: str = NAME) -> None:
    """Raise ValueError if ``result`` is not a well-formed throughput result (benchmark ``name``)."""
    common.validate(result, name)
    res = result["results"]
    common.require(res, ("datasets", "roofline", "adam_step_ms"), "results")
    common.require(res["roofline"], ("gflops", "gemms", "step_flops", "peak"), "results.roofline")
    if not res["datasets"]:
        raise ValueError("no data set was measured")
    for name, d in res["datasets"].items():
        where = f"results.datasets[{name!r}]"
        common.require(d, ("n_train", "samples_per_s", "ratios", "flops", "seconds", "targets_met"), where)
        for k in "ABC":
            common.require(d["samples_per_s"], (k,), where + ".samples_per_s")
            if not d["samples_per_s"][k]["median"] > 0:
                raise ValueError(f"{where}: samples/s of {k} must be > 0")
        common.require(d["ratios"], ("speedup_B_over_A", "time_B_over_C"), where + ".ratios")
        common.require(d["flops"], ("per_epoch", "achieved_gflops", "fraction_of_roofline",
                                    "roofline_gflops"), where + ".flops")
