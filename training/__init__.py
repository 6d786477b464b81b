"""Training: multi-domain haze data generation and three-phase adaptation (imports cidstream.models)."""
