"""Benchmarks run by ``carevault bench``: each measures CareVault and its baselines side by side
in one run and reports ratios, so figures compare across machines."""
