"""Small helpers shared by the whole package (no torch import here)."""
