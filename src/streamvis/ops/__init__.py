"""streamvis.ops."""
