"""Evaluation: region classification, mAP, REC accuracy and caption metrics (no torch)."""
