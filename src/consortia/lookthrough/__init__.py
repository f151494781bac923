"""Look-through supervision and surveillance on the regulator's side, off the consensus path."""
