"""cidstream: dehaze traffic video streams so vehicle detectors see more."""
__version__ = "0.1.0"
