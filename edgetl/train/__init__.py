"""The training stage: config, data, augmentation, feature extraction, the training loop,
fine-tuning, checkpoints, distribution, TensorBoard logs and the run folder."""
