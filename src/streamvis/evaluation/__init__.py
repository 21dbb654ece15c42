"""streamvis.evaluation."""
