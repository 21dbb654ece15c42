"""streamvis.data."""
