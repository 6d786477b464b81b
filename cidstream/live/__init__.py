"""`cidstream live`: several camera streams in one process, on one model."""
