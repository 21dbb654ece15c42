"""streamvis.tracking."""
