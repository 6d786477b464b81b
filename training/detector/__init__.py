"""The detector's adaptation: the pseudo-labelled dataset, the Ultralytics run, the consistency term."""
