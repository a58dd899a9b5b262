"""The exportable adaptive max pooling equals PyTorch's, values and gradients, for sizes that divide and not."""
import pytest
import torch
import torch.nn.functional as F

from medattn.layers.adaptive_pool import adaptive_max_pool2d


@pytest.mark.parametrize("shape,size", [((2, 3, 13, 13), (4, 4)), ((1, 5, 7, 9), (4, 3)), ((2, 4, 8, 8), (2, 2)),
                                        ((1, 2, 5, 5), (5, 5)), ((1, 2, 3, 6), (2, 4))])
def test_equals_torch_adaptive_max_pool(shape, size):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ours = adaptive_max_pool2d(x, size)
    ref = F.adaptive_max_pool2d(x, size)
    assert ours.shape == ref.shape and torch.equal(ours, ref)
    g = torch.randn_like(ref)
    (ga,) = torch.autograd.grad((ours * g).sum(), x)
    (gb,) = torch.autograd.grad((ref * g).sum(), x)
    assert torch.allclose(ga, gb)  # no ties in random data: the same element of each window gets the gradient
