"""aeromamba.ops is the only home of kernels and private PyTorch APIs: the networks call it and
nothing lower, and every private API it relies on still exists and behaves as assumed (a guard
that fails loudly on a PyTorch upgrade rather than silently falling back)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

MODELS = Path(__file__).resolve().parents[1] / "aeromamba" / "models"


TORCH_NAMES = {"torch", "F", "nn"}
TORCH_PRIVATE_METHODS = {"_conv_forward"}  # nn.Module internals that ops/ builds on


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.py")), ids=lambda p: p.name)
def test_networks_use_no_private_api_and_no_kernel_directly(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aeromamba"):
            assert not node.module.startswith("aeromamba.ops."), f"{path.name}: {node.module}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            private = _root(node) in TORCH_NAMES or node.attr in TORCH_PRIVATE_METHODS
            assert not private, f"{path.name}:{node.lineno}: private PyTorch API {node.attr}"


def test_nnpack_private_entry_points_exist_and_agree_with_conv2d():
    assert isinstance(torch._C._get_nnpack_enabled(), bool)
    if not torch.backends.nnpack.is_available():
        pytest.skip("PyTorch built without NNPACK")
    torch.manual_seed(0)
    x, w, b = torch.randn(1, 4, 6, 9), torch.randn(5, 4, 3, 3), torch.randn(5)
    got = torch._nnpack_spatial_convolution(x, w, b, [1, 1])
    torch.testing.assert_close(got, F.conv2d(x, w, b, padding=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("conv", [nn.Conv1d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)])
def test_conv_forward_takes_weight_and_bias_and_serves_forward(conv: nn.Module):
    # ops.conv.conv_bn_relu calls it with folded weights; ops.pointwise overrides it
    x = torch.randn(2, 3, *([5] * (conv.weight.dim() - 2)))
    weight, bias = 2 * conv.weight.detach(), conv.bias.detach() + 1
    functional = F.conv1d if conv.weight.dim() == 3 else F.conv2d
    expected = functional(x, weight, bias, padding=1)
    torch.testing.assert_close(conv._conv_forward(x, weight, bias), expected)
    assert "_conv_forward" in inspect.getsource(type(conv).forward)


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")  # the storage torch.save pickles
def test_checkpoint_rebuild_functions_exist():
    t = torch.arange(6.0)
    rebuilt = torch._utils._rebuild_tensor_v2(t.storage(), 0, (2, 3), (3, 1), False, {})
    assert torch.equal(rebuilt, t.view(2, 3))
    assert isinstance(torch._utils._rebuild_parameter(rebuilt, True, {}), nn.Parameter)
