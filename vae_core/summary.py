"""Model summary: parameter count and FLOPs per example, measured with torch's own counters.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` — torch's dispatcher-level counter — run
on the actual training loss, not from a hand count. It counts the matrix products (``mm``, ``addmm``,
``bmm``, convolutions, attention), 2 FLOPs per multiply-add (so a Linear layer costs 2·in·out per
example forward, bias not counted); elementwise work (activations, the likelihood, Adam's update) is
not counted, which for an MLP VAE is a small fraction.

Used by: chapter 4 (parameter and FLOP counts of the 784-400-20 model), benchmarks (FLOP roofline).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from .train import elbo_loss


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (all, or only those with ``requires_grad``).

    Used by: chapter 4 (model size), :func:`model_summary`.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def flops_per_example(model: nn.Module, x_dim: int | None = None, batch_size: int = 64,
                      loss_fn: Any = None, x: Tensor | None = None, y: Tensor | None = None
                      ) -> dict[str, Any]:
    """FLOPs per example of one training step's loss, forward and forward+backward.

    The loss (default :func:`vae_core.train.elbo_loss`: encode, reparameterize, decode, Bernoulli or
    Gaussian log-likelihood, analytic KL) is evaluated on a batch — ``x`` if given, else
    ``batch_size`` random binary images of ``x_dim`` pixels (default ``model.x_dim``) — inside
    ``FlopCounterMode``, then backpropagated; totals are divided by the batch size. Runs on a copy
    of the model (no gradients left on yours) with a private generator (global RNG untouched).
    ``loss_fn``/``y``: as in :func:`vae_core.train.fit` for conditional models.

    Returns {"forward", "backward", "forward_backward": FLOPs per example (float),
    "by_operator": {"forward": {op: FLOPs per example}, "backward": {...}}}.

    Used by: chapter 4 (FLOP count), benchmarks (FLOPs per epoch for the roofline).
    """
    model = copy.deepcopy(model)
    device = _device(model)
    generator = torch.Generator(device=device).manual_seed(0)
    if x is None:
        x_dim = x_dim if x_dim is not None else getattr(model, "x_dim", None)
        if x_dim is None:
            raise ValueError("pass x_dim (the model has no x_dim attribute) or an example batch x")
        x = torch.bernoulli(torch.full((batch_size, x_dim), 0.5, device=device), generator=generator)
    loss_fn = loss_fn if loss_fn is not None else elbo_loss
    n = len(x)
    with FlopCounterMode(display=False) as forward_counter:
        loss, _ = loss_fn(model, x, y, beta=1.0, generator=generator)
    with FlopCounterMode(display=False) as backward_counter:
        loss.backward()
    fwd = forward_counter.get_total_flops() / n
    bwd = backward_counter.get_total_flops() / n
    return {
        "forward": fwd,
        "backward": bwd,
        "forward_backward": fwd + bwd,
        "by_operator": {"forward": _by_op(forward_counter, n), "backward": _by_op(backward_counter, n)},
    }


def _by_op(counter: FlopCounterMode, n: int) -> dict[str, float]:
    counts: Mapping[Any, int] = counter.get_flop_counts().get("Global", {})
    return {str(op): c / n for op, c in counts.items()}


def model_summary(model: nn.Module, x_dim: int | None = None) -> str:
    """A small text table: each layer with parameters (name, type, shape, count), the total, and
    FLOPs per example (forward, forward+backward) when the input size is known.

    Example (VAE(784, 400, 20))::

        layer           type    shape      parameters
        encoder_hidden  Linear  784 → 400     314,000
        ...
        total                                 652,824
        FLOPs per example (torch FlopCounterMode): forward 1.30 M, forward+backward 3.28 M

    Used by: chapter 4.
    """
    rows = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        if isinstance(module, nn.Linear):
            shape = f"{module.in_features} → {module.out_features}"
        else:
            shape = " ".join(str(tuple(p.shape)) for p in own)
        rows.append((name or "(root)", type(module).__name__, shape, sum(p.numel() for p in own)))
    header = ("layer", "type", "shape", "parameters")
    total = count_parameters(model)
    widths = [max(len(header[i]), *(len(str(r[i])) for r in rows)) if rows else len(header[i])
              for i in range(3)]
    num_w = max(len("parameters"), len(f"{total:,}"))
    lines = [f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:<{widths[2]}}  "
             f"{header[3]:>{num_w}}"]
    for name, kind, shape, count in rows:
        lines.append(f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {shape:<{widths[2]}}  {count:>{num_w},}")
    pad = widths[0] + widths[1] + widths[2] + 4
    lines.append(f"{'total':<{pad}}  {total:>{num_w},}")
    x_dim = x_dim if x_dim is not None else getattr(model, "x_dim", None)
    if x_dim is not None and hasattr(model, "encode"):
        flops = flops_per_example(model, x_dim)
        lines.append(f"FLOPs per example (torch FlopCounterMode): forward {flops['forward'] / 1e6:.2f} M, "
                     f"forward+backward {flops['forward_backward'] / 1e6:.2f} M")
    return "\n".join(lines)


__all__ = ["count_parameters", "flops_per_example", "model_summary"]
