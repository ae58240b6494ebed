"""matgen.guidance."""
