"""The CUDA paths of vae_core, checked against the CPU on one GPU (``bash benchmarks/gpu_check.sh``).

Each check runs the same computation on the GPU and on the CPU and compares them with a tolerance
that says what may legitimately differ (float rounding of other kernels, other random streams):

- ``fit``: a 784-400-20 VAE, 3 epochs on the bundled 4,000 digits, seeded, on each device: the test
  ELBOs agree within 1.5 nats (CUDA draws other random numbers than the CPU, so the runs are two seeds
  of one training, not the same bits); a second CUDA run with the same seed gives the same weights
  as far as cuBLAS is deterministic (largest difference reported).
- ``evaluate``: the CUDA-trained model's IWAE estimate (k = 1000, 200 digits) on the GPU and, for the
  same model moved to the CPU, on the CPU: within 4 combined Monte-Carlo standard errors.
- ``explorer``: the decoder export of the CUDA model equals the export of its CPU copy (same
  payload, the page's pixels within the export tolerance).

Writes ``gpu_paths.json`` (benchmarks' envelope) to ``--out``. Exit status 1 when a check fails, 2 when
no GPU is visible. Used by: ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import common

NAME = "gpu_paths"


def _fit(device: str, epochs: int, seed: int = 0) -> tuple[torch.nn.Module, float, float]:
    from vae_core import data, evaluate, train
    from vae_core.models import VAE

    torch.manual_seed(seed)
    model = VAE(784, 400, 20)
    t0 = time.perf_counter()
    train.fit(model, data.load("mnist-5k", "train").images, epochs=epochs, seed=seed, device=device,
              progress=False)
    common.synchronize(torch.device(device))
    seconds = time.perf_counter() - t0
    x_test, _ = data.binary_test_set("mnist-5k")
    elbo = float(evaluate.test_elbo(model, x_test.to(device), n_samples=10).elbo.mean())
    return model, elbo, seconds


def run(out: Path, device: str = "cuda", epochs: int = 3, n: int = 200, k: int = 1000) -> dict[str, Any]:
    """Run the three checks; return the envelope (also written to ``out``). ``device`` is the device
    under test (a CPU-only smoke test passes "cpu": then both sides run on the CPU)."""
    from vae_core import data, evaluate, explorer

    checks: dict[str, Any] = {}
    gpu_model, gpu_elbo, gpu_s = _fit(device, epochs)
    again, _, _ = _fit(device, epochs)
    cpu_model, cpu_elbo, cpu_s = _fit("cpu", epochs)
    weight_diff = max(float((a - b).abs().max()) for a, b in zip(gpu_model.parameters(), again.parameters(),
                                                               strict=True))
    checks["fit"] = {"test_elbo_device": gpu_elbo, "test_elbo_cpu": cpu_elbo, "seconds_device": gpu_s,
                     "seconds_cpu": cpu_s, "same_seed_max_weight_difference": weight_diff,
                     "ok": abs(gpu_elbo - cpu_elbo) <= 1.5 and math.isfinite(gpu_elbo)}
    x, _ = data.binary_test_set("mnist-5k")
    x = x[:n]
    on_cpu = copy.deepcopy(gpu_model).cpu()
    est_gpu = evaluate.iwae_estimate(gpu_model, x.to(device), k=k)
    est_cpu = evaluate.iwae_estimate(on_cpu, x, k=k)
    se = math.hypot(float(est_gpu.se_mc), float(est_cpu.se_mc))
    checks["evaluate"] = {"iwae_device": float(est_gpu.mean), "iwae_cpu": float(est_cpu.mean),
                          "combined_mc_se": se,
                          "ok": abs(float(est_gpu.mean) - float(est_cpu.mean)) <= 4 * se + 1e-3}
    pay_gpu, pay_cpu = explorer.export_decoder(gpu_model), explorer.export_decoder(on_cpu)
    z = explorer.probe_codes(20, n=256)
    pix = explorer.decoder_forward(pay_gpu, z) - explorer.decoder_forward(pay_cpu, z)
    checks["explorer"] = {"same_payload": pay_gpu["W1"] == pay_cpu["W1"] and pay_gpu["W2"] == pay_cpu["W2"],
                          "max_pixel_difference": float(abs(pix).max()),
                          "ok": float(abs(pix).max()) <= 0.5 / 255}
    machine = common.machine_info(torch.device(device))
    result = common.envelope(NAME, machine, {"fit": f"VAE 784-400-20, {epochs} epochs, mnist-5k, seed 0",
                                             "evaluate": f"IWAE k={k} on {n} test digits"},
                             {"checks": checks, "all_ok": all(c["ok"] for c in checks.values())},
                             quick=False)
    common.write(result, out)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_paths", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=common.RESULTS / "gpu")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no GPU visible to torch: nothing to check", file=sys.stderr)
        return 2
    result = run(args.out)
    for name, c in result["results"]["checks"].items():
        print(f"{name}: {'ok' if c['ok'] else 'FAILED'} {c}")
    return 0 if result["results"]["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
