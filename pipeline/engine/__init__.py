"""The engine: storage, discovery, batches, merge and split, independent of any recipe kind."""
