"""gpt2scratch.measure (Appendix A): peak memory, page faults, glibc's malloc settings."""
import builtins
import platform
import resource
import subprocess
import sys

import torch
from conftest import tiny_config

from gpt2scratch.measure import keep_freed_memory, page_faults, peak_memory_mb, step_page_faults

CPU = torch.device("cpu")


def test_peak_memory_without_proc_reads_ru_maxrss(monkeypatch):
    real_open = builtins.open

    def no_proc(path, *args, **kwargs):  # a system without /proc, as macOS
        if str(path) == "/proc/self/status":
            raise OSError("no /proc here")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    peak = peak_memory_mb(CPU)
    assert before <= peak <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def test_page_faults_count_the_pages_a_new_tensor_touches():
    # a fresh process: in this one, keep_freed_memory() (another test, the CLI) may have kept
    # freed pages that a new tensor would reuse without a fault
    code = ("import torch; from gpt2scratch.measure import page_faults; f = page_faults(); "
            "x = torch.ones(2**24); print(page_faults() - f)")  # 64 MiB, every page written
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(done.stdout) >= 64 // 2  # at least one fault per 2 MiB (a huge page)
    assert page_faults() > 0


def test_keep_freed_memory_says_whether_glibc_took_the_settings():
    kept = keep_freed_memory()
    assert isinstance(kept, bool)
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert kept


def test_step_page_faults_gives_faults_and_seconds_per_step_after_the_first():
    steps = step_page_faults(tiny_config(), steps=3, keep=True)
    assert len(steps) == 2
    for faults, seconds in steps:
        assert isinstance(faults, int) and faults >= 0 and seconds > 0
