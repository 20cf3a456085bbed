"""Training/evaluation data: synthetic scenes, the JSONL region-instruction format, loaders.

numpy/PIL only (no torch), so these modules work in any environment.
"""
