"""Loss terms, one idea per file (classification criteria: ``medattn.losses.classification``)."""
from .consistency import kl_consistency, map_distance
from .hsic import cosine_independence, gaussian_kernel, hsic, hsic_matrix, pairwise_hsic
from .weighted_ce import batch_inverse_ce
