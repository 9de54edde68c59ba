"""glassgem: glass surface segmentation with GEM.

    from glassgem import Predictor
    mask = Predictor().predict("photo.jpg")            # bool [H, W] at the photo's size, the shipped GEM-S

    from glassgem import GEM
    model = GEM.from_pretrained()                      # the network with weight files (glassgem.api)
    mask = model.predict("photo.jpg")                  # uint8 {0,1}: a Predictor of this model

`GEM` (glassgem.api.GEM) and `Predictor` (glassgem.inference.predictor.Predictor) are imported on first use, so
`import glassgem` (and `glassgem --help`) stays free of torch. That first use applies the `glassgem` command's CPU
thread policy to the process before torch starts (glassgem.inference.threads; GLASSGEM_THREAD_POLICY=0 opts out).
"""

__version__ = "0.1.0"

__all__ = ["GEM", "Predictor", "__version__"]


def __getattr__(name: str):
    if name in ("GEM", "Predictor"):
        from .inference.threads import library_thread_policy

        library_thread_policy()  # before torch is imported below, so OpenMP reads it
        if name == "GEM":
            from .api import GEM

            return GEM
        from .inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'glassgem' has no attribute {name!r}")
