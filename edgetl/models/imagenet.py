"""The 1000 ImageNet class names, shipped with edgetl so `edgetl classify` needs no download.

imagenet_classes.txt is Keras' class order (class k is line k+1 of the file), taken from
google-coral/test_data's imagenet_labels.txt (Apache-2.0) without its leading 'background'
line. Keras' own `decode_predictions` downloads its index on first use; this does not.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

NUM_CLASSES = 1000


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """Each class's first name ('tabby', 'Egyptian cat', 'goldfish'), in Keras' order."""
    text = resources.files("edgetl.models").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.split(",")[0].strip() for line in text.splitlines() if line.strip())
    if len(names) != NUM_CLASSES:  # pragma: no cover - a broken install
        raise RuntimeError(f"edgetl's imagenet_classes.txt has {len(names)} names, not {NUM_CLASSES}; reinstall edgetl")
    return names
