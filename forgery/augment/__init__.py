"""Batched, on-device augmentations (kornia): paired image/mask transforms and AGDA."""
