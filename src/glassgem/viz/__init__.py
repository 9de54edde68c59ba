"""Pictures of what GEM sees: mask overlays and contact sheets (overlay), DQS query points (queries),
t-SNE of image features of several sets (tsne). Import the submodule you need; this package imports nothing heavy."""
