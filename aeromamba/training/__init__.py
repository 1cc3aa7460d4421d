"""Training: the GAN loop (`solver`), DDP helpers (`distributed`), logging (`logging`)."""
