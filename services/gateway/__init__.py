"""Gateway service: serves predictions through Triton and logs them."""
