"""Trainer service: trains PyTorch models on training requests and drift events."""
