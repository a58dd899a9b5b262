"""``python -m medattn`` (and ``torchrun -m medattn``): the command line."""
import sys

from .cli import main

sys.exit(main())
