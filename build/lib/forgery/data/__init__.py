"""Datasets, readers and transforms for forgery research."""
