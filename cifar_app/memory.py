"""The server's memory: what Streamlit and glibc would otherwise keep after the work is done.

Measured with scripts/bench_memory.py (README, "Memory"): the app's caches hold under 2 MB; what
grows is glibc's heap. Integrated Gradients' activation batches, image encodings and uploads are
freed by Python but kept by malloc, in one arena per session thread, and never given back while
anything near an arena's top lives. Hence: few arenas, a trim after heavy work, and a trim every
30 s for what sessions leave when they end (Streamlit has no hook for that). And all torch work on
one thread (`on_torch_thread`): Streamlit runs each session's script in a thread of its own, and
every OS thread that calls torch gets its own OpenMP team and thread-local buffers.
"""

from __future__ import annotations

import ctypes
import gc
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

M_ARENA_MAX = -8  # glibc's mallopt() parameter number (malloc.h)
_state: dict[str, object] = {}
_lock = threading.Lock()
# One thread runs every model load, prediction, feature map and attribution. With a thread per
# session, 8 sessions' Attributions grids (explain.attribute already serialised by its lock) peaked
# at +196 MB over the server's resting size; run here, at +87 MB (8 threads × 12 attributions in
# one process, VmHWM, torch 2.13.0+cpu). Attributions were serial anyway; a prediction or a feature
# map may now wait behind another session's work (one grid: ~1 s on the dev machine, README "Speed").
_on_worker = threading.local()  # .yes is set on the worker thread only
_torch_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch",
                                   initializer=lambda: setattr(_on_worker, "yes", True))


def on_torch_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """fn(*args, **kwargs) on the one thread that runs torch work; its result, or its exception."""
    if getattr(_on_worker, "yes", False):  # already there: a nested call must not wait for itself
        return fn(*args, **kwargs)
    return _torch_thread.submit(fn, *args, **kwargs).result()


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to tune
        return None


def release_memory() -> bool:
    """Collect garbage and give freed heap back to the OS (glibc's malloc_trim); True if the trim ran.

    An Integrated Gradients pass on ResNet18 allocates batches of activations (peak +111 MB at
    explain.MAX_BATCH 16, +307 MB at 64); glibc keeps those pages after they are freed, so without
    the trim the server's RSS stays that much higher.
    """
    gc.collect()
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def freeze_long_lived() -> None:
    """Move every object alive now out of the cyclic collector's way (gc.freeze).

    Called once, right after the models load: the ~470k objects of torch and captum then cost
    Streamlit's gc.collect(2) nothing. Not after every run, where it would also freeze sessions'
    objects, which a frozen reference cycle would keep for good.
    """
    with _lock:
        if not _state.get("frozen"):
            gc.collect()
            gc.freeze()
            _state["frozen"] = True


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """At most `arenas` glibc malloc arenas for this process (as MALLOC_ARENA_MAX=2 would).

    glibc gives each thread that allocates concurrently its own arena (up to 8 per core), and memory
    freed in one arena is neither reused by the others nor given back while any chunk near its top
    lives. Streamlit runs every session's script in its own thread: with 8 sessions at once that
    was tens of MB of free-but-held heap. Only arenas created afterwards are limited, so call it
    early; it is idempotent. Done in code, not the environment, because Streamlit Community Cloud
    sets no environment before the server starts. True if glibc accepted it.
    """
    with _lock:
        if _state.get("arenas") == arenas:
            return True
        libc = _libc()
        ok = bool(libc.mallopt(M_ARENA_MAX, int(arenas))) if libc is not None else False
        if ok:
            _state["arenas"] = arenas
        return ok


def start_heap_trimmer(interval_s: float = 30.0) -> bool:
    """A daemon thread that gives free heap back to the OS every `interval_s` seconds.

    What sessions freed (image encodings, uploads, a closed session's state once Streamlit drops it)
    stays in glibc's heap until a trim; one takes a few ms here. Started once per process; True if
    started by this call.
    """
    with _lock:
        libc = _libc()
        if _state.get("trimmer") or libc is None:
            return False

        def loop() -> None:
            while True:
                time.sleep(interval_s)
                libc.malloc_trim(0)

        _state["trimmer"] = threading.Thread(target=loop, name="malloc-trim", daemon=True)
        _state["trimmer"].start()
        return True
