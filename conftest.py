"""Root pytest configuration: doctests of src/ run with the test suite."""

import torch

collect_ignore = ["src/bergab/__main__.py"]

# The suite's tensors are tiny: one intra-op thread is faster than two fighting over the
# CI machine's two cores (and leaves the other core to subprocess tests).
torch.set_num_threads(1)
