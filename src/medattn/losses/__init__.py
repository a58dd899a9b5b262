"""Loss terms, one idea per file (classification criteria and their registry: ``medattn.losses.classification``)."""
from .consistency import kl_consistency, map_distance
from .contrastive import class_feature_nce, info_nce
from .hsic import cosine_independence, gaussian_kernel, hsic, hsic_matrix, pairwise_hsic
from .multilabel import asymmetric_loss, focal_loss
from .saliency import class_distinctiveness_loss, gradcam_all_classes, spatial_coherence_loss
from .weighted_ce import batch_inverse_ce

__all__ = ["asymmetric_loss", "batch_inverse_ce", "class_distinctiveness_loss", "class_feature_nce",
           "cosine_independence", "focal_loss", "gaussian_kernel", "gradcam_all_classes", "hsic", "hsic_matrix",
           "info_nce", "kl_consistency", "map_distance", "pairwise_hsic", "spatial_coherence_loss"]
