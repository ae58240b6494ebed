"""matgen.nn."""
