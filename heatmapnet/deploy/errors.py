"""The one error of deployment: an input the user gave (a model file, boxes, images, a video, an
output path) that cannot be used as it is. One line naming the file, key or box and what was
expected; the command line prints it and exits with status 2."""
from __future__ import annotations

from ..errors import UserError


class DeployError(UserError, ValueError):
    """A model file, boxes file, image, video or output path that cannot be used as given."""
