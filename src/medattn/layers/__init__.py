"""Attention building blocks, one per file."""
from .cbam import CBAM
from .class_query_attention import ClassQueryAttention, ClassWiseLinear
from .gaussian_mixture_attention import GaussianMixtureAttention, gaussian_mixture_map
from .mica import MICA, MICAHead
from .se import SEBlock, keras_he_normal_
from .soft_attention import SoftAttention
from .spatial_attention import LevelAdapter, SpatialAttentionMap, variance_pruned_mean
from .variational_bottleneck import VariationalBottleneck
from .vector_sampling import VectorSampling, vector_sample

__all__ = ["CBAM", "ClassQueryAttention", "ClassWiseLinear", "GaussianMixtureAttention", "LevelAdapter", "MICA",
           "MICAHead", "SEBlock", "SoftAttention", "SpatialAttentionMap", "VariationalBottleneck", "VectorSampling",
           "gaussian_mixture_map", "keras_he_normal_", "variance_pruned_mean", "vector_sample"]
