"""glassgem.hub: every weight file in one place.

pretrained.py (the user-facing `GEM` with from_pretrained / save_pretrained, name -> folder resolution,
config.json + model.safetensors, convert, push_to_hub), remote.py (Hugging Face Hub ids -> downloaded or
cached files, uploads), files.py (safe reading of .safetensors / .pth / .pkl),
original.py (key map of the original GEM checkpoints), encoders.py (MobileSAM / SAM / EfficientNet-Lite0 /
DINOv2 encoder files), imagenet_vit.py (timm ImageNet ViT files). Import the submodule you need.
"""
