"""Measuring an embedder: the benchmark process, the conditions of a measurement and their calibration, the roofline, the load run, quality, the workloads."""
