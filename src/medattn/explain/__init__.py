"""Explanations: native attention maps, class activation maps for any model, overlays and archives."""
from .cams import CAM_METHODS, CLASS_AGNOSTIC, DEFAULT_METHODS, cam_extractor, compute_cams
from .maps import Explanation, explain_batch, iter_explanations, native_maps, normalize_maps, select_targets
from .overlay import load_npz, overlay_figure, save_npz, save_overlay

__all__ = ["CAM_METHODS", "CLASS_AGNOSTIC", "DEFAULT_METHODS", "Explanation", "cam_extractor", "compute_cams",
           "explain_batch", "iter_explanations", "load_npz", "native_maps", "normalize_maps", "overlay_figure",
           "save_npz", "save_overlay", "select_targets"]
