"""medattn: attention-guided medical image classification."""
__version__ = "0.1.0"

from .models import create_model, list_models  # noqa: E402

__all__ = ["create_model", "list_models", "__version__"]
