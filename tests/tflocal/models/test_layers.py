"""The head's building blocks where they trade work for the same function: the norm+linear
input projection without an input gradient, and the transformer block on packed real tokens."""

from __future__ import annotations

import torch
from torch import nn

from tflocal.models.layers import Block, norm_linear


def _grads(module: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    module.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in module.named_parameters()}


def test_norm_linear_is_the_same_function_and_gradient():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.LayerNorm(48), nn.Linear(48, 16))
    with torch.no_grad():  # an affine that is not the identity
        seq[0].weight.uniform_(0.5, 1.5)
        seq[0].bias.normal_()
    x = 3 * torch.randn(5, 7, 48) + 1
    target = torch.randn(5, 7, 16)
    ref = seq(x)
    out = norm_linear(seq, x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    g_ref = _grads(seq, ((seq(x) - target) ** 2).sum())
    g_out = _grads(seq, ((norm_linear(seq, x) - target) ** 2).sum())
    assert set(g_ref) == set(g_out) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    for name in g_ref:
        torch.testing.assert_close(g_out[name], g_ref[name], atol=1e-4, rtol=1e-4)
    # an input that needs its gradient goes through the modules as they are
    xg = x.clone().requires_grad_(True)
    norm_linear(seq, xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_packed_block_equals_the_padded_block_at_real_positions():
    torch.manual_seed(0)
    block = Block(32, heads=4)
    B, S = 4, 9
    lengths = torch.tensor([9, 3, 1, 6])
    mask = torch.arange(S)[None] < lengths[:, None]
    x = torch.randn(B, S, 32)
    real = mask.reshape(-1).nonzero().squeeze(1)
    target = torch.randn(len(real), 32)
    ref = block(x, mask).reshape(B * S, 32)[real]
    out = block.forward_packed(x.reshape(B * S, 32)[real], real, mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    g_ref = _grads(block, ((block(x, mask).reshape(B * S, 32)[real] - target) ** 2).sum())
    g_out = _grads(block, ((block.forward_packed(x.reshape(B * S, 32)[real], real, mask) - target) ** 2).sum())
    for name in g_ref:
        torch.testing.assert_close(g_out[name], g_ref[name], atol=1e-4, rtol=1e-4)


def test_a_zero_initialized_block_starts_as_the_identity_and_learns_past_it():
    torch.manual_seed(0)
    block = Block(32, heads=4, init="zero")
    mask = torch.tensor([[True] * 5 + [False] * 2, [True] * 7])
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(block(x, mask), x)  # no mean of the other positions added
    torch.manual_seed(0)
    default = Block(32, heads=4)
    assert not torch.allclose(default(x, mask), x)
    # every other weight is as the default initialization drew it, and the zeroed outputs get a
    # gradient, so one step leaves the identity
    for (name, p), (_, q) in zip(block.named_parameters(), default.named_parameters()):
        if not name.startswith(("proj.", "mlp.3.")):
            torch.testing.assert_close(p, q)
    target = x + torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(1))
    ((block(x, mask) - target) ** 2).sum().backward()
    assert block.proj.weight.grad.abs().sum() > 0 and block.mlp[3].weight.grad.abs().sum() > 0
    torch.optim.SGD(block.parameters(), lr=0.1).step()
    assert not torch.allclose(block(x, mask), x)
