"""matgen.training."""
