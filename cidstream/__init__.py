"""cidstream: dehaze traffic video streams so vehicle detectors see more."""
import os as _os

# torch's CPU thread team (libgomp) spins for a while (GOMP_SPINCOUNT 300000) before it sleeps when it
# has no more threads than cores. With another CPU-bound process beside it, a spinning team member burns
# the time slices its partner needs, and a run slowed 3-7x (1.7 vs 11.4 fps; docs/benchmarking.md).
# Passive waiting costs nothing measurable when the machine is idle. libgomp reads this once, when torch
# loads it, so it is set here, before any of our modules imports torch; a value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
