"""matgen: equivariant crystal diffusion and closed-loop discovery."""
from __future__ import annotations

__version__ = "0.1.0"
