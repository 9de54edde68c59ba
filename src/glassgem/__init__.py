"""glassgem: glass surface segmentation with GEM.

    from glassgem import GEM
    mask = GEM.from_pretrained().predict("photo.jpg")  # uint8 {0,1} at the photo's size

`GEM` (glassgem.hub.pretrained.GEM: the network of glassgem.model with weight files) is imported on first
use, so `import glassgem` (and `glassgem --help`) stays free of torch.
"""

__version__ = "0.1.0"

__all__ = ["GEM", "__version__"]


def __getattr__(name: str):
    if name == "GEM":
        from .hub.pretrained import GEM

        return GEM
    raise AttributeError(f"module 'glassgem' has no attribute {name!r}")
