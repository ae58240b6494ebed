"""matgen.diffusion."""
