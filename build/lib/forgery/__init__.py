"""forgery: Lightning + Hydra experiment suite for image-forgery research (MTSE-Net, MAT)."""

__version__ = "0.1.0"
