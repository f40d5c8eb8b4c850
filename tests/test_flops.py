"""FLOPs and MACs per op family (spec §7.6), model totals (§2.5), autograd-saved bytes and the
autocast state of each op (§3.1).

Every expected count below is the table's formula worked out by hand for the layer's shapes
(the same numbers TorchLens 2.15 reports for these models). MACs are FLOPs // 2 throughout.
"""

from __future__ import annotations

import torch

import torchlens as tl

from models import flops as M

R = torch.randn


def _log(model: torch.nn.Module, inputs: list, **kw: object) -> tl.ModelLog:
    torch.manual_seed(0)
    return tl.log_forward_pass(model, inputs, **kw)


def _check(log: tl.ModelLog, expected: dict[str, tuple[int | None, int | None]]) -> None:
    """Every listed layer has exactly these (forward, backward) FLOPs and the matching MACs."""
    for label, (fwd, bwd) in expected.items():
        e = log[label]
        assert (e.flops_forward, e.flops_backward) == (fwd, bwd), label
        assert e.macs_forward == (None if fwd is None else fwd // 2), label
        assert e.macs_backward == (None if bwd is None else bwd // 2), label


def test_matmul_family() -> None:
    log = _log(M.MatmulOps(), [R(2, 3, 4), R(4, 5), R(2, 4, 5), R(2, 3, 5), R(5)])
    _check(
        log,
        {
            "matmul_1_1": (2 * 2 * 3 * 4 * 5, 2 * 2 * 2 * 3 * 4 * 5),  # 2·batch·M·K·N; backward ×2
            "bmm_1_2": (2 * 2 * 3 * 4 * 5, 2 * 240),
            "getitem_1_3": (0, 0),
            "mm_1_4": (2 * 3 * 4 * 5, 240),
            # A 1-d right operand: N is its length and the batch is the output's leading dims (none here).
            "matmul_2_6": (2 * 3 * 4 * 4, 192),
            "einsum_1_7": (None, None),  # not modelled
            "addmm_1_9": (2 * 3 * 4 * 5 + 3 * 5, 270),  # the product plus one add per output element
            "baddbmm_1_10": (2 * 2 * 3 * 4 * 5 + 2 * 3 * 5, 540),
        },
    )


def test_linear_and_convolutions() -> None:
    log = _log(M.LinearConv(), [R(2, 3, 4), R(1, 3, 10), R(1, 3, 6, 6), R(1, 4, 5, 5), R(1, 2, 3, 4, 4)])
    # 2·out·(weight elements per output channel) + out with a bias; transposed convs count the same way.
    _check(
        log,
        {
            "linear_1_1": (2 * 36 * 4 + 36, 2 * (2 * 36 * 4 + 36)),  # out (2,3,6)
            "linear_2_2": (2 * 36 * 4, 576),  # no bias
            "conv1d_1_3": (2 * 32 * 3 * 3 + 32, 1216),  # out (1,4,8), weight (4,3,3)
            "conv2d_1_4": (2 * 144 * 3 * 3 * 3, 15552),  # out (1,4,6,6), no bias
            "conv2d_2_5": (2 * 54 * 2 * 3 * 3 + 54, 3996),  # groups=2: out (1,6,3,3), weight (6,2,3,3)
            "conv3d_1_6": (2 * 54 * 2 * 2 * 2 * 2 + 54, 3564),  # out (1,3,2,3,3), weight (3,2,2,2,2)
            "convtranspose1d_1_8": (2 * 33 * 3 * 2 + 33, 858),  # out (1,3,11), weight (2,3,2)
            "convtranspose2d_1_10": (2 * 98 * 2 * 3 * 3 + 98, 7252),  # out (1,2,7,7), weight (3,2,3,3)
        },
    )
    assert log.modules["c2g"].flops_forward == 1998 and log.modules["c2g"].macs_forward == 999


def test_pooling() -> None:
    log = _log(M.Pooling(), [R(1, 2, 6, 6), R(1, 2, 9), R(1, 1, 4, 4, 4)])
    _check(
        log,
        {
            "maxpool2d_1_1": (18 * 2, 36),  # out (1,2,3,3) × kernel_size 2 (an int kernel counts once)
            "maxpool2d_2_2": (12 * 2 * 3, 72),  # out (1,2,3,2) × 2·3
            "avgpool1d_1_3": (6 * 3, 18),
            "avgpool3d_1_4": (8 * 2, 16),
            "adaptiveavgpool2d_1_5": (72, 72),  # adaptive pools: one per input element
        },
    )


def test_normalizations() -> None:
    log = _log(M.Norms(), [R(2, 2, 3, 3), R(2, 3, 4), R(1, 4, 2, 2), R(1, 2, 5)])
    # 5 per output element; backward ×2.5. Buffers cost nothing.
    _check(
        log,
        {
            "buffer_1": (0, 0),
            "batchnorm_1_1": (5 * 36, 450),
            "layernorm_1_2": (5 * 24, 300),
            "groupnorm_1_3": (5 * 16, 200),
            "instancenorm_1_4": (5 * 10, 125),
            "rmsnorm_1_5": (5 * 24, 300),
        },
    )


def test_activations_and_softmax() -> None:
    log = _log(M.Activations(), [R(2, 3, 4)])
    n = 24
    _check(
        log,
        {
            "relu_1_1": (n, n),
            "gelu_1_2": (14 * n, 14 * n * 3 // 2),  # smooth activations: backward ×1.5
            "silu_1_3": (5 * n, 180),
            "sigmoid_1_4": (4 * n, 144),
            "tanh_1_5": (6 * n, 216),
            "elu_1_6": (9 * n, 324),
            "softplus_1_7": (9 * n, 324),
            "leakyrelu_1_8": (n, n),
            "hardswish_1_9": (4 * n, 4 * n),
            "mish_1_10": (8 * n, 288),
            "selu_1_11": (10 * n, 360),
            "softmax_1_12": (5 * n, 10 * n),  # backward ×2
            "logsoftmax_1_13": (6 * n, 12 * n),
        },
    )


def test_scaled_dot_product_attention() -> None:
    log = _log(M.Attention(), [R(1, 2, 4, 8), R(1, 2, 6, 8), R(1, 2, 6, 3)])
    bls = 2 * 4 * 6  # batch·heads, query length, key length
    fwd = 2 * bls * 8 + 2 * bls * 3 + 6 * bls  # Q·Kᵀ, P·V, scale + softmax
    _check(log, {"scaleddotproductattention_1_1": (fwd, fwd * 5 // 2), "output_1": (fwd, fwd * 5 // 2)})
    assert fwd == 1344


def test_elementwise() -> None:
    log = _log(M.Elementwise(), [R(2, 3, 4), R(4)])
    n = 24  # the broadcast output's elements
    _check(
        log,
        {
            "add_1_1": (n, n),
            "mul_1_2": (n, n),
            "sub_1_3": (n, n),
            "truediv_1_4": (n, n),
            "exp_1_5": (8 * n, 8 * n),  # transcendental: 8 per element
            "abs_1_6": (n, n),
            "log_1_7": (8 * n, 8 * n),
            "sqrt_1_9": (2 * n, 2 * n),
            "pow_1_10": (2 * n, 2 * n),
            "addcmul_1_11": (3 * n, 3 * n),
            "gt_1_12": (n, n),
            "where_1_13": (n, n),
            "clamp_1_14": (n, n),
        },
    )


def test_reductions_and_sorting() -> None:
    log = _log(M.Reductions(), [R(2, 3, 4)])
    n = 24  # elements of the reduced input
    _check(
        log,
        {
            "sum_1_1": (n, n),
            "mean_1_2": (n, n),
            "max_1_3": (n, n),  # both outputs of max(dim)
            "max_2_4": (n, n),
            "std_1_5": (3 * n, 3 * n),
            "vectornorm_1_6": (2 * n, 2 * n),
            "logsumexp_1_7": (n, n),
            "argmax_1_8": (n, n),
            "cumsum_1_9": (n, n),  # cumulative ops: one per output element
            "sort_1_10": (110, 110),  # n·log2(n) over the output: 24·log2(24) = 110.04
            "topk_1_12": (43, 43),  # output (2,3,2): 12·log2(12) = 43.02
        },
    )


def test_embedding_recurrent_interpolate_losses_and_unknowns() -> None:
    log = _log(M.Misc(), [torch.randint(0, 10, (2, 3)), R(1, 2, 3, 3), torch.tensor([1, 3])])
    by_type: dict[str, list] = {}
    for e in log.layer_list:
        by_type.setdefault(e.layer_type, []).append(e)
    expected = {
        "input": (0, 0),
        "embedding": (0, 0),
        "zeros": (None, None),  # tensor creation: unknown
        "lstm": (None, None),  # recurrent layers are not modelled (as in 2.15)
        "gru": (None, None),
        "interpolate": (4 * 72, 4 * 72),  # 4 per output element (1,2,6,6), any mode
        "view": (0, 0),
        "crossentropy": (6 * 10, 60),  # 6 per input element (input (2,5))
        "mseloss": (3 * 18, 54),  # 3 per input element (input (2,3,3))
        "identity": (None, None),
        "cat": (0, 0),
        "pad": (None, None),
    }
    for layer_type, (fwd, bwd) in expected.items():
        assert by_type[layer_type], layer_type
        for e in by_type[layer_type]:  # every output of a multi-output op alike
            assert (e.flops_forward, e.flops_backward) == (fwd, bwd), e.layer_label
            assert e.macs_forward == (None if fwd is None else fwd // 2)
    assert log.modules["lstm"].flops_forward == 0 and log.modules["up"].flops_forward == 288


def test_output_copies_its_producer_through_pass_through_modules() -> None:
    # nn.Identity returning its input adds an `identity` node (not modelled: None); the output node
    # repeats the count of the op that made the tensor, as 2.15 does.
    log = _log(M.IdentityAfter(), [R(2, 3)])
    _check(log, {"sigmoid_1_1": (24, 36), "identity_1_2": (None, None), "output_1": (24, 36)})
    assert log["output_1"].func_autocast_state == log["sigmoid_1_1"].func_autocast_state
    log = _log(torch.nn.Identity(), [R(2, 3)])
    _check(log, {"input_1": (0, 0), "output_1": (0, 0)})
    assert log["output_1"].func_autocast_state == {}


def test_small_cnn_totals_and_summary() -> None:
    log = _log(M.SmallCNN(), [R(1, 1, 6, 6)])
    conv = 2 * 32 * 9 + 32  # out (1,2,4,4), weight (2,1,3,3), bias
    relu, pool, fc = 32, 8 * 2, 2 * 3 * 8 + 3
    _check(log, {"conv2d_1_1": (conv, 2 * conv), "maxpool2d_1_3": (pool, pool), "linear_1_5": (fc, 2 * fc)})
    # The output node repeats its producer's count, and the totals include it (as 2.15 sums them).
    fwd = conv + relu + pool + 0 + fc + fc
    bwd = 2 * conv + relu + pool + 0 + 2 * fc + 2 * fc
    assert (log.total_flops_forward, log.total_flops_backward, log.total_flops) == (fwd, bwd, fwd + bwd)
    assert (log.total_macs_forward, log.total_macs_backward, log.total_macs) == (fwd // 2, bwd // 2, (fwd + bwd) // 2)
    assert fwd == 758
    assert log.modules["conv"].flops == 3 * conv and log.modules["conv"].macs == 3 * conv // 2
    lines = log.summary(level="compute").splitlines()
    rows = [[c.strip() for c in ln.split("|")[1:5]] for ln in lines if ln.startswith("| ") and "Layer" not in ln]
    assert rows == [["conv", "20", "608", "304"], ["pool", "0", "16", "8"], ["fc", "27", "51", "25"]]
    assert "Forward FLOPs: 758" in lines and "MACs: 379" in lines


def test_tiny_transformer_totals() -> None:
    log = _log(M.TinyTransformerBlock(), [R(1, 3, 8)])
    ln = 5 * 24
    qkv = 2 * 72 * 8 + 72  # out (1,3,24)
    bls = 2 * 3 * 3
    attn = 2 * bls * 4 + 2 * bls * 4 + 6 * bls
    proj = 2 * 24 * 8 + 24
    fc1, gelu, fc2 = 2 * 48 * 8 + 48, 14 * 48, 2 * 24 * 16 + 24
    add = 24
    _check(log, {"linear_1_2": (qkv, 2 * qkv), "scaleddotproductattention_1_12": (attn, attn * 5 // 2)})
    fwd = ln + qkv + attn + proj + add + ln + fc1 + gelu + fc2 + add + add  # the last add again as output_1
    bwd = 2 * ln * 5 // 2 + 2 * qkv + attn * 5 // 2 + 2 * proj + 3 * add + 2 * fc1 + gelu * 3 // 2 + 2 * fc2
    assert (log.total_flops_forward, log.total_flops_backward) == (fwd, bwd) == (4620, 9150)
    assert log.modules["self"].flops_forward == fwd
    assert log.modules["qkv"].flops_forward == qkv


def test_multi_pass_layers_and_modules_count_the_first_pass() -> None:
    log = _log(M.LoopedLinear(), [R(2, 3)])
    lin, sig = 2 * 6 * 3 + 6, 4 * 6
    assert [log[f"linear_1_1:{i}"].flops_forward for i in (1, 2, 3)] == [lin] * 3
    assert log.layers["linear_1_1"].flops_forward == lin  # a LayerLog reads its first pass
    assert log.total_flops_forward == 3 * lin + 3 * sig + sig  # every pass, plus the output node
    # A module's count sums its layers once each (first pass), as 2.15 does.
    assert log.modules["fc"].flops_forward == lin and log.modules["fc"].flops_backward == 2 * lin
    assert log.modules["self"].flops_forward == lin + sig + sig


def test_autograd_saved_bytes() -> None:
    model = M.AutogradOps()
    log = _log(model, [R(2, 3)])
    # addmm saves its input (the weight needs a gradient, the input does not): 2·3 floats.
    assert (log["linear_1_1"].autograd_saved_bytes, log["linear_1_1"].autograd_saved_tensor_count) == (24, 1)
    assert (log["relu_1_2"].autograd_saved_bytes, log["relu_1_2"].autograd_saved_tensor_count) == (32, 1)  # result
    assert (log["tanh_1_3"].autograd_saved_bytes, log["tanh_1_3"].autograd_saved_tensor_count) == (32, 1)
    # h * h saves the same tensor twice: counted once.
    assert (log["mul_1_4"].autograd_saved_bytes, log["mul_1_4"].autograd_saved_tensor_count) == (32, 1)
    for label in ("input_1", "output_1"):
        assert log[label].autograd_saved_bytes is None and log[label].autograd_saved_tensor_count is None
    assert log.total_autograd_saved_bytes == 24 + 32 + 32 + 32

    # The same values the grad_fn objects hold.
    h = torch.tanh(torch.relu(model.fc(R(2, 3))))
    assert h.grad_fn._saved_result.nbytes == 32

    with torch.no_grad():
        log = _log(model, [R(2, 3)])
    assert all(e.autograd_saved_bytes is None for e in log.layer_list)
    assert log.total_autograd_saved_bytes is None


def test_autograd_saved_bytes_sum_over_passes() -> None:
    log = _log(M.LoopedLinear(), [R(2, 3)])
    per_pass = [log[f"sigmoid_1_2:{i}"].autograd_saved_bytes for i in (1, 2, 3)]
    assert per_pass == [24, 24, 24]  # sigmoid saves its result, 2·3 floats
    assert log.layers["sigmoid_1_2"].autograd_saved_bytes == 72
    assert log.layers["sigmoid_1_2"].autograd_saved_tensor_count == 3


def test_autocast_state_per_op() -> None:
    log = _log(M.AutocastInside(), [R(2, 4)])
    on = {"cpu": {"enabled": True, "dtype": torch.bfloat16}, "cuda": {"enabled": False, "dtype": torch.float16}}
    off = {"cpu": {"enabled": False, "dtype": torch.bfloat16}, "cuda": {"enabled": False, "dtype": torch.float16}}
    assert log["input_1"].func_autocast_state == {}
    assert log["linear_1_1"].func_autocast_state == on
    assert log["linear_1_1"].tensor_dtype == torch.bfloat16  # the region really ran under autocast
    assert log["float_1_2"].func_autocast_state == off
    assert log["add_1_4"].func_autocast_state == off
    assert log["output_1"].func_autocast_state == off  # copies its producer's

    # Entered around the whole call, with a region switched off inside the forward.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log = _log(M.AutocastInside(), [R(2, 4)])
    assert log["linear_1_1"].func_autocast_state == on
    assert log["mul_1_3"].func_autocast_state == off
    assert log["add_1_4"].func_autocast_state == on
    assert not torch.is_autocast_enabled("cpu")  # left as found


def test_totals_survive_save_and_load(tmp_path: object) -> None:
    log = _log(M.SmallCNN(), [R(1, 1, 6, 6)])
    path = str(tmp_path) + "/cnn.tlspec"  # type: ignore[operator]
    tl.save(log, path)
    loaded = tl.load(path)
    assert [e.flops_forward for e in loaded.layer_list] == [e.flops_forward for e in log.layer_list]
    assert loaded.total_flops == log.total_flops == 758 + 1468
