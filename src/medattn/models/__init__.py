"""Models: a registry of attention classifiers on timm backbones."""
from ._registry import create_model, list_models, register_model
from .base import LossContext, MedAttnModel, TrainOutput

__all__ = ["LossContext", "MedAttnModel", "TrainOutput", "create_model", "list_models", "register_model"]
