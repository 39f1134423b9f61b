"""The graph passes, in pipeline order: cut, metadata, fuse, batches, op versions."""
