"""matgen.acquisition."""
