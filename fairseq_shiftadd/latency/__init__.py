"""Measured latency on the user's own device, the latency predictor trained on it, and their console scripts."""
