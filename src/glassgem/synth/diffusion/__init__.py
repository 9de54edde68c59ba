"""The paper's S-GSD pipeline: Stable Diffusion components (sd_components.py), ControlNet fine-tuning
(controlnet.py, controlnet_data.py), prompts.py, generation (generate.py) and the CLIP filter (clip_filter.py).
diffusers and transformers (the `synth` extra) are imported only where a model is built."""
