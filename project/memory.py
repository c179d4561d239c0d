"""glibc malloc tuning for server processes that handle many large frame buffers.

Frames of 60-100 KB are allocated from the heap (below glibc's mmap threshold).
With glibc's default dynamic trim threshold, a burst of frames freed together
(the recorder writes a 200 ms batch at a time) leaves a free heap top that
glibc hands back to the kernel, only to fault the same pages in again moments
later. That page churn made recording cost +21 % of ingest CPU instead of +6 %
(bench/recording_cpu.py, 20 cameras x 15 fps x 60 KB). Keeping up to
TRIM_THRESHOLD of free heap avoids it; resident memory stays at the working set.

An operator who sets MALLOC_TRIM_THRESHOLD_ in the environment keeps control.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_TOP_PAD = -2
TRIM_THRESHOLD = 256 * 1024 * 1024
TOP_PAD = 64 * 1024 * 1024


def tune_malloc() -> bool:
    """Apply the tuning; True if glibc accepted it, False where it does not apply."""
    if not sys.platform.startswith("linux") or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # glibc only; musl has none
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_TOP_PAD, TOP_PAD))
