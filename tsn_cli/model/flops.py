"""Model size report: trainable parameters and FLOPs of a TSN config, computed analytically (no paddle, instant).

FLOPs are counted as multiply-accumulates (MACs) of the convolutions and the FC — the convention behind
"ResNet-50 = 4.1 GFLOPs at 224x224". Batch norm, ReLU, pooling and residual additions (<1%) are not counted.
A TSN clip runs the backbone once per input frame (``seg_num`` of them; at test time x crops) and the FC once on
the averaged features. Parameters count trainable weights only (conv kernels, BN scale/shift, FC weight and
bias); BN running mean/variance are buffers and are excluded (ResNet-50 + 1000-class FC = 25.56 M, the usual
figure).
"""

from __future__ import annotations

from tsn_cli.model.arch import block_plan, check_depth, feature_channels


def _out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _conv(h: int, w: int, cin: int, cout: int, k: int, stride: int) -> tuple[int, int, int, int]:
    """One ConvBN: returns (out_h, out_w, macs, params) with 'same' padding (k-1)//2 as in the model."""
    pad = (k - 1) // 2
    oh, ow = _out(h, k, stride, pad), _out(w, k, stride, pad)
    return oh, ow, oh * ow * k * k * cin * cout, k * k * cin * cout + 2 * cout


def backbone_cost(depth: int, height: int, width: int | None = None) -> tuple[int, int]:
    """(MACs per frame, trainable params) of the ResNet backbone for one [3, height, width] frame."""
    width = height if width is None else width
    h, w, macs, params = _conv(height, width, 3, 64, 7, 2)
    h, w = _out(h, 3, 2, 1), _out(w, 3, 2, 1)  # max pool 3x3/2, padding 1
    for spec in block_plan(depth):
        if spec.bottleneck:
            convs = [
                (spec.in_channels, spec.width, 1, 1),
                (spec.width, spec.width, 3, spec.stride),
                (spec.width, spec.out_channels, 1, 1),
            ]
        else:
            convs = [(spec.in_channels, spec.width, 3, spec.stride), (spec.width, spec.out_channels, 3, 1)]
        bh, bw = h, w
        for cin, cout, k, s in convs:
            bh, bw, m, p = _conv(bh, bw, cin, cout, k, s)
            macs += m
            params += p
        if spec.projection:
            _, _, m, p = _conv(h, w, spec.in_channels, spec.out_channels, 1, spec.stride)
            macs += m
            params += p
        h, w = bh, bw
    return macs, params


def model_size(depth: int, num_classes: int, seg_num: int, target_size: int) -> dict:
    """Size of a TSN: ``{"params": int, "gflops_per_frame": float, "gflops_per_clip": float}``.

    ``gflops_per_frame`` is the backbone on one ``target_size`` x ``target_size`` frame; ``gflops_per_clip`` is
    ``seg_num`` frames plus the FC (GMACs). ResNet-50 at 224: 4.09 per frame.
    """
    check_depth(depth)
    macs, params = backbone_cost(depth, int(target_size))
    c = feature_channels(depth)
    fc_macs = c * int(num_classes)
    params += c * int(num_classes) + int(num_classes)
    return {
        "params": int(params),
        "gflops_per_frame": macs / 1e9,
        "gflops_per_clip": (macs * int(seg_num) + fc_macs) / 1e9,
    }
