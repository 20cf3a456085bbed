"""Training of RGPT: run configs, conversation building, stage 1/2 trainer, CLI; aux losses
and augmentations come from registries that plugins fill (``aux_losses``, ``augment``)."""
