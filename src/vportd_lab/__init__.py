"""The lab, the demo, the benchmarks and the simulator: they import vportd, never the reverse."""
