"""matgen.evaluation."""
