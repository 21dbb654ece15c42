"""Dataset and results formats converted to and from the YouTube-VIS dict (one module per format)."""
