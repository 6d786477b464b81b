"""cid-lite's three-phase training (pretrain, adapt, finetune): config, losses, datasets, pseudo-labels."""
