"""Tests of the benchmark, soak and calibration tools in `bench`."""
