"""Root pytest configuration: doctests of src/ run with the test suite."""

import os

import pytest
import torch

collect_ignore = ["src/bergab/__main__.py"]

# The suite's tensors are tiny: one intra-op thread is faster than two fighting over the
# CI machine's two cores (and leaves the other core to subprocess tests).
torch.set_num_threads(1)


def pytest_configure(config: pytest.Config) -> None:
    """With ``BERGAB_REQUIRE_NATIVE=1`` (CI sets it) a run without bergab's CPU kernels
    fails at once instead of skipping every kernel test: a broken compiler in the image
    must not pass green."""
    del config
    if os.environ.get("BERGAB_REQUIRE_NATIVE", "0") == "1":
        from bergab.optim import native_status

        status = native_status()
        if not status.available:
            pytest.exit(f"BERGAB_REQUIRE_NATIVE=1 but the CPU kernels are {status}", returncode=1)
