"""matgen.models."""
