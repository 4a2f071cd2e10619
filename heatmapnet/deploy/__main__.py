"""``python -m heatmapnet.deploy predict --model FILE.onnx INPUT ...``: prediction without PyTorch."""
import sys

from .cli import main

sys.exit(main())
