"""Shared fixtures: tiny native models (fast, seeded) and the real SmolLM2 (cached conversion)."""

from __future__ import annotations

import os
import sys
from typing import NamedTuple

import pytest
import torch

import ffnmem

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tiny-model work: with two threads on a loaded 2-core machine,
    OpenMP spin-waits make hundreds of tiny steps many times slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny():
    """2 layers, d_model 64, GELU MLP with biases, LayerNorm, byte tokenizer."""
    return ffnmem.load_model("tiny-2l", device="cpu", seed=0)


@pytest.fixture(scope="session")
def tiny_gated():
    """2 layers, d_model 64, Llama-style gated SiLU MLP, RMSNorm, rotary."""
    return ffnmem.load_model("tiny-gated", device="cpu", seed=0)


@pytest.fixture(scope="session")
def smol():
    """The embedded SmolLM2-135M (converted once into FFNMEM_CACHE, then ~1 s per load)."""
    return ffnmem.load_model("smollm2-135m", device="cpu")


class CliRun(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the ``ffnmem`` CLI in-process through ``main()`` (the console script's entry point)."""
    from ffnmem.cli import main

    def run(*args, cwd=None) -> CliRun:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["ffnmem", *map(str, args)])
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return CliRun(code, out.out, out.err)

    return run


@pytest.fixture
def screenshot(tmp_path):
    """Render an HTML file in headless Chromium (1100×1400) and return the image as an array;
    skips where Chromium is not installed."""
    import shutil
    import subprocess
    import tempfile

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it with apt-get when run as root)")

    def take(page):
        import matplotlib.pyplot as plt

        shot = tmp_path / "screenshot.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--no-first-run", "--disable-sync",
                        f"--user-data-dir={tempfile.mkdtemp()}", "--window-size=1100,1400", f"--screenshot={shot}",
                        page.as_uri()], check=True, capture_output=True, timeout=120)
        return plt.imread(shot)

    return take
