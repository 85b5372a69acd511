"""Benchmarks behind ``make bench``: each figure is measured next to a baseline in the same run.

The machine is shared and noisy, so an absolute number means little; the ratio to a
baseline measured seconds apart on the same broker/server is what to read.
"""
