"""Evaluator service: gates candidate models against the champion."""
