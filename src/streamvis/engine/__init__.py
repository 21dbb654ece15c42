"""streamvis.engine."""
