"""cifar_app.memory: the heap settings the server runs with (glibc here, as on Streamlit Community Cloud)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cifar_app import memory

glibc = pytest.mark.skipif(memory._libc() is None, reason="not glibc")


@glibc
def test_release_memory_trims_the_heap():
    assert memory.release_memory() is True


@glibc
def test_arena_limit_and_trimmer_are_set_once_per_process():
    # In a child: the settings are process-wide and must not leak into the test process.
    code = ("import threading, gc; from cifar_app import memory as m; "
            "a = m.limit_malloc_arenas(2), m.limit_malloc_arenas(2); "
            "t = m.start_heap_trimmer(0.05), m.start_heap_trimmer(0.05); "
            "names = [x.name for x in threading.enumerate()]; "
            "m.freeze_long_lived(); m.freeze_long_lived(); "
            "print(a, t, names.count('malloc-trim'), gc.get_freeze_count() > 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=".")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(True, True) (True, False) 1 True"


def test_torch_work_runs_on_one_thread_and_errors_come_back():
    import threading

    names = {memory.on_torch_thread(lambda: threading.current_thread().name) for _ in range(3)}
    assert len(names) == 1 and names.pop().startswith("torch")
    # a nested call does not wait for itself
    assert memory.on_torch_thread(lambda: memory.on_torch_thread(lambda: 7)) == 7
    with pytest.raises(ZeroDivisionError):
        memory.on_torch_thread(lambda: 1 / 0)
