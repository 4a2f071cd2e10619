"""``python -m heatmapnet``: the command line (also installed as ``heatmapnet``)."""
import sys

from .cli import main

sys.exit(main())
