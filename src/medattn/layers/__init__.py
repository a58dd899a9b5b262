"""Attention building blocks, one per file."""
from .mica import MICA, MICAHead
from .se import SEBlock, keras_he_normal_
from .spatial_attention import LevelAdapter, SpatialAttentionMap, variance_pruned_mean
from .vector_sampling import VectorSampling, vector_sample
