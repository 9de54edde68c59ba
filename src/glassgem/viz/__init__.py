"""Inspection figures of a model: DQS query points and reference boxes (queries), t-SNE of image features of
several sets (tsne). Mask overlays and contact sheets are glassgem.overlay (every layer draws them). Import the
submodule you need; this package imports nothing heavy."""
