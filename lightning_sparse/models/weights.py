"""Local pretrained weights for a backbone: nothing is downloaded, a state-dict file is read.

ImageNet-pretrained backbones are what the domain-adaptation and multi-task papers start from;
here they come from a local file (torchvision's ``resnet50-*.pth`` loads into
``resnet50_imagenet`` as it is: the parameter names are torchvision's).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["load_backbone_weights"]


def load_backbone_weights(model: nn.Module, path: str) -> tuple[int, list[str]]:
    """Load the tensors of ``path`` whose names and shapes match ``model`` (``strict=False``: a
    classifier of another size, or a removed one, is skipped).

    ``path`` holds a state dict, or a checkpoint with a ``"state_dict"`` entry (Lightning's);
    read with ``weights_only=True``.

    Returns:
        ``(loaded, kept)``: how many tensors were loaded, and the names of the model's tensors
        left as they were.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: If it holds no state dict or shares no tensor with the model.

    Examples:
        >>> import tempfile, os
        >>> source, target = nn.Linear(3, 2), nn.Linear(3, 2)
        >>> path = os.path.join(tempfile.mkdtemp(), "w.pt"); torch.save(source.state_dict(), path)
        >>> load_backbone_weights(target, path), torch.equal(source.weight, target.weight)
        ((2, []), True)
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"`backbone_checkpoint` must be a local weights file, got {path!r} (no such file).")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"`backbone_checkpoint` must hold a state dict, got a {type(state).__name__} in {path!r}.")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not usable:
        raise ValueError(f"`backbone_checkpoint` {path!r} shares no parameter (name and shape) with the backbone.")
    model.load_state_dict(usable, strict=False)
    return len(usable), sorted(set(own) - set(usable))
