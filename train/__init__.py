"""Training: shard loader, pretrain loop, checkpoints, generation. Imports model and tokenizer, never jobs."""
