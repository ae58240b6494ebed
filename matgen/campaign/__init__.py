"""matgen.campaign."""
