"""Monitor service: detects drift and quality loss from predictions and feedback."""
