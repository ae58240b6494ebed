"""matgen.testing."""
