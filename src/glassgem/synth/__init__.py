"""glassgem.synth: synthetic training data. procedural/ renders glass scenes with exact masks (no model);
diffusion/ fine-tunes a ControlNet and generates S-GSD images from real masks (the paper's pipeline);
manifest.py records what either has written."""
