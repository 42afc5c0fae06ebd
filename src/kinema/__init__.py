"""kinema: a video diffusion system.

Importing this package touches no network, disk or accelerator and pulls in no heavy
library; submodules import torch and friends where they are used.
"""

__version__ = "0.1.0"

from kinema.errors import KinemaError

__all__ = ["KinemaError", "__version__"]
