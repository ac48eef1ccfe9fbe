"""The U-Net segmentation model, its losses and its deterministic serialization."""
