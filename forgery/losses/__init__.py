"""Losses as nn.Modules; their training state (RIL centers, alpha) lives in registered buffers."""
