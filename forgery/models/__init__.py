"""Plain networks (no training logic): MTSE-Net, MAT, and their layers."""
