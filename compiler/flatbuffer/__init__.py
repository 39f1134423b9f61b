"""The only FlatBuffer code: read/write (model_io) and the one graph-editing API (graph)."""
