"""glassgem.hub: every weight file in one place.

pretrained.py (from_pretrained / load_checked / save_pretrained / push_to_hub: functions of the network,
name -> folder resolution, config.json + model.safetensors, convert), remote.py (Hugging Face Hub ids -> downloaded or
cached files, uploads), files.py (safe reading of .safetensors / .pth / .pkl),
original.py (key map of the original GEM checkpoints), encoders.py (MobileSAM / SAM / EfficientNet-Lite0 /
DINOv2 encoder files), imagenet_vit.py (timm ImageNet ViT files). Import the submodule you need.
"""
