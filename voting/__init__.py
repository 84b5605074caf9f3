"""Pure voting primitives: canonical JSON, Merkle log, signatures, checkpoints, roll and tally."""
