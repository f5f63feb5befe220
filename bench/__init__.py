"""The benchmarks, the soak test and the calibration tools of faceauth, with their shared helpers (load generator,
server launchers, test photos); each runs from the repository root as ``python -m bench.<name>``."""
