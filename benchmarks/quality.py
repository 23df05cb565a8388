"""Same quality: the seed-style loop (A) and ``vae_core.train.fit`` (B) reach the same test ELBO.

Speed must never come from doing less. For each of several seeds, a fresh 784-400-20 VAE is trained
for the same number of epochs by A (:func:`benchmarks.loops.train_seed`) and by B (``fit``), on the
bundled ``mnist-5k`` training digits, batch 128, Adam 1e-3. Both optimise the same objective: A, as
pytorch/examples does, fits the grey levels (no binarization), so B runs with ``binarize=None`` here
(the throughput benchmark times B with its default dynamic binarization, which costs slightly more).
A sums the loss over the batch and B averages it; Adam's update does not depend on that scale (up to
its ε), so the two are the same training up to random numbers.

Both models are then evaluated by the same code, :func:`vae_core.evaluate.test_elbo` on the 1,000
test digits (grey levels, 10 z-samples per image, fixed seed), in nats per image. Reported: each
seed's value, mean ± sd per loop, the difference of means and its standard error; "agree" means the
difference is within 2 standard errors (or within 0.5 nats, a difference no reader would care about).

Run: ``python -m benchmarks quality`` (part of the default ``python -m benchmarks``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch

from . import common
from .loops import SeedVAE, seed_dataset, seed_loader, seed_to_vae, train_seed

NAME = "quality"
BATCH_SIZE = 128
TOLERANCE_NATS = 0.5


def _mean_sd(values: Sequence[float]) -> dict[str, float]:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 3), "sd": round(sd, 3)}


def run(dataset: str = "mnist-5k", *, epochs: int = 10, seeds: Sequence[int] = (0, 1, 2),
        threads: int | None = None, device: str | None = None, limit: int | None = None,
        n_samples: int = 10, quick: bool = False) -> dict[str, Any]:
    """Train A and B for ``epochs`` epochs with each seed and compare their test ELBO; return the
    envelope (see :mod:`benchmarks.common`). limit: train on the first ``limit`` images and test on
    the first ``limit`` test images (smoke test)."""
    from vae_core import data
    from vae_core.evaluate import test_elbo
    from vae_core.models import VAE
    from vae_core.train import fit

    dev = common.resolve_device(device)
    with common.torch_threads(threads if threads is not None else common.default_threads()):
        machine = common.machine_info(dev)
        train_images = data.load(dataset, "train").images[:limit]
        test_images = data.load(dataset, "test").images[:limit]
        seed_ds = seed_dataset(dataset, "train", limit=limit)
        elbos: dict[str, list[float]] = {"A": [], "B": []}
        seconds: dict[str, list[float]] = {"A": [], "B": []}
        for seed in seeds:
            torch.manual_seed(seed)
            seed_model = SeedVAE()
            t, _ = common.timed(lambda m=seed_model: train_seed(m, seed_loader(seed_ds, BATCH_SIZE, dev),
                                                                epochs, dev), dev)
            seconds["A"].append(t)
            elbos["A"].append(float(test_elbo(seed_to_vae(seed_model).eval(), test_images,
                                              n_samples=n_samples).elbo))
            torch.manual_seed(seed)
            model = VAE(784, 400, 20)
            t, _ = common.timed(lambda m=model, s=seed: fit(m, train_images, epochs=epochs,
                                                            batch_size=BATCH_SIZE, binarize=None, seed=s,
                                                            device=dev, progress=False), dev)
            seconds["B"].append(t)
            elbos["B"].append(float(test_elbo(model.eval(), test_images, n_samples=n_samples).elbo))
            common.log(f"  quality seed {seed}: test ELBO A {elbos['A'][-1]:.2f}, B {elbos['B'][-1]:.2f}")
    a, b = _mean_sd(elbos["A"]), _mean_sd(elbos["B"])
    n = len(seeds)
    se = math.sqrt((a["sd"] ** 2 + b["sd"] ** 2) / n) if n > 1 else 0.0
    diff = b["mean"] - a["mean"]
    results = {
        "test_elbo": {"A": {**a, "values": [round(v, 3) for v in elbos["A"]]},
                      "B": {**b, "values": [round(v, 3) for v in elbos["B"]]}},
        "difference_B_minus_A": round(diff, 3),
        "standard_error": round(se, 3),
        "agree": bool(abs(diff) <= max(2 * se, TOLERANCE_NATS)),
        "train_seconds": {k: common.summary(v) for k, v in seconds.items()},
    }
    settings = {"dataset": dataset, "epochs": epochs, "seeds": list(seeds), "batch_size": BATCH_SIZE,
                "lr": 1e-3, "model": "VAE 784-400-20 Bernoulli", "device": str(dev), "limit": limit,
                "objective": "grey-level Bernoulli ELBO (A as pytorch/examples; B: fit(binarize=None))",
                "evaluation": f"vae_core.evaluate.test_elbo, {n_samples} z-samples, grey-level test set",
                "n_train": len(train_images), "n_test": len(test_images),
                "agree_rule": f"|B − A| ≤ max(2·SE, {TOLERANCE_NATS} nats)"}
    return common.envelope(NAME, machine, settings, results, quick=quick)


def validate(result: dict[str, Any]) -> None:
    """Raise ValueError if ``result`` is not a well-formed quality result."""
    common.validate(result, NAME)
    res = result["results"]
    common.require(res, ("test_elbo", "difference_B_minus_A", "standard_error", "agree"), "results")
    for k in "AB":
        common.require(res["test_elbo"], (k,), "results.test_elbo")
        common.require(res["test_elbo"][k], ("mean", "sd", "values"), f"results.test_elbo.{k}")
        if not all(math.isfinite(v) for v in res["test_elbo"][k]["values"]):
            raise ValueError(f"test ELBO of {k} is not finite")
