"""The lab, the demo, the benchmarks and the simulator: they import vportd, never the reverse.

Installed with vportd; what it needs beyond the controller comes with the
`lab` extra (`pip install 'vportd[lab]'`), which vportctl checks before it
offers `lab`, `demo` and `bench` (`vportd.ctl.hook`).
"""
