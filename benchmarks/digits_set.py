"""Write a third, far-domain image set for the accuracy benchmarks: scikit-learn's bundled digits.

    python benchmarks/digits_set.py OUT_DIR
    python benchmarks/bench_accuracy.py --data ../shared/datasets/cats_and_dogs_filtered \
        ../shared/datasets/flowers OUT_DIR

The shared sets are both natural photos close to ImageNet; this one is not (1,797 handwritten digits,
8x8 grey, 10 classes), and it ships inside scikit-learn, so it needs no download. Each digit is drawn
dark on white and enlarged to 64x64 with bilinear filtering, one PNG per image in a folder per class
(a flat layout: `val_split` holds out 20 %).
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_digits(out: Path) -> int:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        grey = (255 - image * 255 / 16).astype(np.uint8)
        Image.fromarray(grey).resize((64, 64), Image.BILINEAR).convert("RGB").save(folder / f"{i:04d}.png")
    return len(digits.images)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/digits_set.py OUT_DIR")
    if Path(sys.argv[1]).exists() and any(Path(sys.argv[1]).iterdir()):
        # other images there would join the set, and the same digit written twice can land in train and val
        sys.exit(f"error: {sys.argv[1]} is not empty; give a new or empty folder")
    print(f"wrote {write_digits(Path(sys.argv[1]))} images to {sys.argv[1]}")
