"""Training of RGPT: run configs, conversation building, stage 1/2 trainer, CLI."""
