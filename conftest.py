"""Root pytest configuration: doctests of src/ run with the test suite."""

collect_ignore = ["src/bergab/__main__.py"]
