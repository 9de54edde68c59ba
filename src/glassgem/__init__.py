"""glassgem: glass surface segmentation with GEM."""
__version__ = "0.1.0"
