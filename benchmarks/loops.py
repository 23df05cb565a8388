"""The two reference training loops that :func:`vae_core.train.fit` ("B") is measured against.

- **A — BASELINE, the seed-style loop.** A faithful copy of the training loop of pytorch/examples
  ``vae/main.py`` (the loop most VAE code starts from): a torchvision ``Dataset`` object that turns each
  uint8 image into a PIL image and back into a tensor with ``transforms.ToTensor()``, one sample at a
  time, a ``DataLoader`` (``shuffle=True``; ``num_workers=1, pin_memory=True`` on CUDA as in the
  example) that collates them, a decoder ending in ``sigmoid`` and
  ``F.binary_cross_entropy(..., reduction="sum")`` + the analytic KL, ``Adam(lr=1e-3)``, and
  ``loss.item()`` every step for the running average. Only the ``print`` every 10 batches is left out.
  It trains on the grey levels (no binarization), as the example does.
- **C — the compute-only floor.** The least work one training step can be: forward, backward and fused
  Adam step of the same 784-400-20 model on data that is already a float tensor on the device, already
  binarized, already shuffled (each batch is a view, no copy); no validation, no bookkeeping, no host
  synchronisation. Whatever B spends beyond C is overhead of the training loop.

All three train the same architecture with the same optimizer settings; A's module keeps the example's
layer names (``fc1``, ``fc21``…), and :func:`seed_to_vae` copies its weights into a
:class:`vae_core.models.VAE` so all models are evaluated by the same code.

Used by: :mod:`benchmarks.train` (throughput), :mod:`benchmarks.quality` (same test ELBO).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vae_core.distributions import bernoulli_log_prob
from vae_core.models import VAE

# --------------------------------------------------------------------------------------------------
# A: the seed-style loop (BASELINE, after pytorch/examples vae/main.py)
# --------------------------------------------------------------------------------------------------


class SeedVAE(nn.Module):
    """pytorch/examples' VAE, verbatim up to type hints: 784-400-20, ReLU, sigmoid output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z: Tensor) -> Tensor:
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def seed_loss_function(recon_x: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """pytorch/examples' loss: summed BCE on probabilities + analytic KL (nats, summed over the batch)."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


class SeedStyleMNIST(torch.utils.data.Dataset):
    """A torchvision-style dataset over in-memory uint8 images (N, 28, 28), for data that has no
    torchvision class (the bundled ``mnist-5k``). ``__getitem__`` is torchvision's ``MNIST.__getitem__``:
    the uint8 image becomes a PIL image (mode "L"), then goes through ``transform``."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Any = None) -> None:
        self.data, self.targets, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy())  # a 2-D uint8 array is a mode "L" image
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def seed_dataset(dataset: str, split: str = "train", limit: int | None = None
                 ) -> torch.utils.data.Dataset:
    """The dataset object the seed loop iterates over, with ``transforms.ToTensor()``.

    "fashion-mnist": torchvision's own ``FashionMNIST`` class, on the files that
    :func:`vae_core.data.load` decompressed (from Debian's package) into its data root. "mnist-5k" (or
    any other name :func:`vae_core.data.load` knows): :class:`SeedStyleMNIST` over the loaded tensors.
    limit: keep only the first ``limit`` examples (the smoke test).
    """
    from torchvision import datasets, transforms

    from vae_core import data

    to_tensor = transforms.ToTensor()
    if dataset == "fashion-mnist":
        data.load(dataset, split)  # makes sure the IDX files are in torchvision's layout
        ds: Any = datasets.FashionMNIST(str(data.default_root()), train=(split == "train"),
                                        transform=to_tensor)
    else:
        loaded = data.load(dataset, split)
        ds = SeedStyleMNIST(loaded.images, loaded.labels, to_tensor)
    if limit is not None and limit < len(ds):
        ds = torch.utils.data.Subset(ds, range(limit))
    return ds


def seed_loader(ds: torch.utils.data.Dataset, batch_size: int, device: torch.device
                ) -> torch.utils.data.DataLoader:
    """The example's ``DataLoader``: shuffled; one worker process and pinned memory on CUDA."""
    kwargs: dict[str, Any] = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, **kwargs)


def train_seed(model: SeedVAE, loader: torch.utils.data.DataLoader, epochs: int, device: torch.device,
               lr: float = 1e-3) -> list[float]:
    """A: the example's ``train(epoch)`` for ``epochs`` epochs. Returns the average loss per epoch
    (nats per example, as the example prints it). Randomness: the global torch RNG (seed it first)."""
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    averages = []
    for _ in range(epochs):
        model.train()
        train_loss = 0.0
        for data, _ in loader:
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = seed_loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        averages.append(train_loss / len(loader.dataset))
    return averages


def seed_to_vae(seed_model: SeedVAE) -> VAE:
    """A :class:`vae_core.models.VAE` with the seed model's weights (same function: the seed decoder's
    ``sigmoid(fc4(h))`` is the Bernoulli mean of logits ``fc4(h)``), for evaluation by vae_core."""
    vae = VAE(784, 400, 20)
    names = {"fc1": "encoder_hidden", "fc21": "to_mu", "fc22": "to_logvar", "fc3": "decoder_hidden",
             "fc4": "to_x"}
    state = {f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in seed_model.state_dict().items()}
    vae.load_state_dict(state)
    return vae.to(next(seed_model.parameters()).device)


# --------------------------------------------------------------------------------------------------
# C: the compute-only floor
# --------------------------------------------------------------------------------------------------


def floor_batches(x: Tensor, batch_size: int, seed: int = 0) -> list[Tensor]:
    """Prepare C's data once: float (N, 784) in [0, 1] on its device → statically binarized, shuffled,
    cut into batches that are views (no copy when used)."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    xb = (torch.rand(x.shape, generator=g, device=x.device) < x).to(x.dtype)
    xb = xb[torch.randperm(len(xb), generator=g, device=x.device)].contiguous()
    return list(xb.split(batch_size))


def train_floor(model: VAE, batches: list[Tensor], epochs: int) -> None:
    """C: forward + backward + Adam step of ``model``'s layers on each batch, nothing else.

    The loss is fit's (mean over the batch of −log Bernoulli(x; σ(logits)) summed over pixels, by the
    same :func:`vae_core.distributions.bernoulli_log_prob` that fit uses, + analytic KL), written out
    with the model's layers so that no input check, bookkeeping or host sync runs. Each epoch replays the
    same batches (the order of pre-shuffled data does not change the cost). Adam is the fused
    implementation, the fastest torch has (``fit`` uses it too)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    model.train()
    for _ in range(epochs):
        for xb in batches:
            h = torch.relu(model.encoder_hidden(xb))
            mu, logvar = model.to_mu(h), model.to_logvar(h)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = model.to_x(torch.relu(model.decoder_hidden(z)))
            rec = -bernoulli_log_prob(xb, logits).sum()
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (rec + kl) / len(xb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
