"""matgen.data."""
