"""streamvis.models."""
