"""Synthetic labels from a multimodal model (paper §4.4): providers, normalisation, the stage."""
