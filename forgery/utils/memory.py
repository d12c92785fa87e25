"""Returning freed heap memory to the operating system."""

from __future__ import annotations

import ctypes
import functools
import gc

__all__ = ["release_free_memory"]


@functools.cache
def _malloc_trim():
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only
    except OSError:
        return None


def release_free_memory(collect: bool = True) -> bool:
    """Hands the C heap's free pages back to the OS (glibc's ``malloc_trim``), after a garbage collection
    when ``collect``.

    In a test loop the heap keeps the freed batch tensors as holes between the metrics' small per-image state
    chunks, and glibc keeps those pages resident: measured, the resident set grew by ~12 kB per image while
    the live states are ~1 kB per image (splicing), and the intervals computed after the loop came on top.
    Returns False where the C library has no ``malloc_trim``.
    """
    if collect:
        gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
