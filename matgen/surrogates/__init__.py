"""matgen.surrogates."""
