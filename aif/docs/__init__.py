"""Documents generated from the code (configuration reference)."""
