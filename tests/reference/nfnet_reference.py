#!/usr/bin/env python3
"""Golden data for vitscale's NFNet tests: timm's NFNet pieces with random weights, run forward and backward on
PyTorch (CPU, float32), written as safetensors files under tests/golden/nfnet/.

Run from the repository root with a Python that has torch 2.x, timm 1.0 and safetensors:

    python3 tests/reference/nfnet_reference.py --out tests/golden/nfnet

What it writes:

  std_conv.safetensors  three scaled weight-standardised convolutions (timm.layers.ScaledStdConv2d /
                        ScaledStdConv2dSame, as NFNet builds them: eps=1e-5, gain not at its initial 1), each
                        under a prefix:
    same_grouped   ScaledStdConv2dSame(6, 8, 3, stride=2, groups=2) on a 9x7 image (asymmetric SAME padding)
    stem           ScaledStdConv2dSame(3, 16, 3, stride=2) on a 12x12 image (the stem's first convolution)
    symmetric_1x1  ScaledStdConv2d(8, 4, 1, gamma=1.7) (PyTorch padding; gamma in the weight's scale)
  Under each prefix: weight [O, I/g, K, K] and gain [O, 1, 1, 1] and bias [O] (timm's parameters), input [B, H, W, C]
  (NHWC; timm takes NCHW, the script permutes), probe [B, Ho, Wo, O] (the loss is sum(output * probe)),
  output [B, Ho, Wo, O], and grad.input / grad.weight / grad.gain / grad.bias.

  tiny.safetensors  a whole NormFreeNet with timm's dm_nfnet structure (deep_quad stem, SAME padding, gamma in the
                    activations, skipinit, SE with rd_ratio 0.5, extra 3x3 conv, final conv x2) at a small size:
                    depths (1, 2, 1, 1), channels (16, 32, 48, 64), stem 16, group width 8, 10 classes, 3 x 36 x 36
                    images (odd sides after the stem: 9, 5, 3, 2, so SAME padding and the ceil-mode shortcut pool
                    both meet odd inputs), batch 2, eval mode. Every parameter is random (skipinit gains and conv
                    gains too: timm initialises skipinit_gain at 0, which would hide the residual branches).
    <timm name>      every parameter under its timm name and shape
    input.images     [B, H, W, C] NHWC;  input.labels [B] (float32 class ids)
    output.logits    [B, 10];  output.loss [1] (mean softmax cross-entropy);  output.dlogits [B, 10]
    output.features  [B, 128] the pooled features (timm's forward_head(pre_logits=True))
    grad.<timm name> d loss / d parameter, for every parameter

  tiny_sgd_agc.safetensors  the tiny model after 3 steps on its batch of SGD with Nesterov momentum 0.9
                    (torch.optim.SGD, lr 0.05) and adaptive gradient clipping (λ = 0.01, eps 1e-3) as DeepMind's
                    NFNet code defines it (nfnets/optim.py unitwise_norm: conv and linear weights per output unit,
                    vectors and scalars whole — a gain [O, 1, 1, 1] is a vector there, shape (O,)), not applied to
                    the classifier head.fc, as the NFNet paper; no weight decay.
    <timm name>      every parameter after the 3 steps;  clipped.units  [1] how many units AGC clipped in step 1
"""
import argparse
import os

import torch
from safetensors.torch import save_file
from timm.layers import ScaledStdConv2d, ScaledStdConv2dSame


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def std_conv_case(prefix, conv, batch, height, width, gen):
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.5 + 0.1)
        conv.gain.copy_(torch.rand(conv.gain.shape, generator=gen) + 0.5)
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.2)
    x = torch.randn(batch, conv.in_channels, height, width, generator=gen, requires_grad=True)
    y = conv(x)
    probe = torch.randn(y.shape, generator=gen)
    (y * probe).sum().backward()
    return {
        f"{prefix}.weight": conv.weight.detach(),
        f"{prefix}.gain": conv.gain.detach(),
        f"{prefix}.bias": conv.bias.detach(),
        f"{prefix}.input": nhwc(x.detach()),
        f"{prefix}.probe": nhwc(probe),
        f"{prefix}.output": nhwc(y.detach()),
        f"{prefix}.grad.input": nhwc(x.grad),
        f"{prefix}.grad.weight": conv.weight.grad,
        f"{prefix}.grad.gain": conv.gain.grad,
        f"{prefix}.grad.bias": conv.bias.grad,
    }


def write_std_conv(out_dir):
    gen = torch.Generator().manual_seed(23)
    tensors = {}
    tensors.update(std_conv_case("same_grouped", ScaledStdConv2dSame(6, 8, 3, stride=2, groups=2, eps=1e-5), 2, 9, 7, gen))
    tensors.update(std_conv_case("stem", ScaledStdConv2dSame(3, 16, 3, stride=2, eps=1e-5), 2, 12, 12, gen))
    tensors.update(std_conv_case("symmetric_1x1", ScaledStdConv2d(8, 4, 1, gamma=1.7, eps=1e-5), 3, 5, 5, gen))
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "std_conv.safetensors"))


TINY_CFG = dict(depths=(1, 2, 1, 1), channels=(16, 32, 48, 64), stem_type="deep_quad", stem_chs=16, group_size=8,
                bottle_ratio=0.5, extra_conv=True, gamma_in_act=True, same_padding=True, skipinit=True,
                num_features=128, act_layer="gelu", attn_layer="se", attn_kwargs=dict(rd_ratio=0.5))


def write_tiny(out_dir):
    from timm.models.nfnet import NfCfg, NormFreeNet
    gen = torch.Generator().manual_seed(2301)
    model = NormFreeNet(NfCfg(**TINY_CFG), num_classes=10, in_chans=3).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".gain"):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif name.endswith("skipinit_gain"):
                p.copy_(torch.rand(p.shape, generator=gen) * 0.8 + 0.4)
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif name.startswith("head.fc") or ".fc" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + 0.05)
    images = torch.randn(2, 3, 36, 36, generator=gen)
    labels = torch.tensor([3, 7])
    features = model.forward_head(model.forward_features(images), pre_logits=True)
    logits = model(images)
    logits.retain_grad()
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    tensors = {name: p.detach() for name, p in model.named_parameters()}
    tensors.update({
        "input.images": nhwc(images),
        "input.labels": labels.float(),
        "output.logits": logits.detach(),
        "output.loss": loss.detach().reshape(1),
        "output.dlogits": logits.grad,
        "output.features": features.detach(),
    })
    tensors.update({"grad." + name: p.grad for name, p in model.named_parameters()})
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "tiny.safetensors"))
    print("tiny:", sum(p.numel() for p in model.parameters()), "parameters, loss", float(loss.detach()))


def unitwise_norm(t):
    """DeepMind's unitwise_norm on a timm tensor: per output unit for conv [O, I, k, k] and linear [O, I]
    weights, whole for vectors (gains [O, 1, 1, 1] included) and scalars."""
    if t.squeeze().dim() <= 1:
        return t.norm()
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def write_tiny_sgd(out_dir):
    from timm.models.nfnet import NfCfg, NormFreeNet
    from safetensors.torch import load_file
    start = load_file(os.path.join(out_dir, "tiny.safetensors"))
    model = NormFreeNet(NfCfg(**TINY_CFG), num_classes=10, in_chans=3).eval()
    model.load_state_dict({n: start[n] for n, _ in model.named_parameters()}, strict=False)
    images = start["input.images"].permute(0, 3, 1, 2).contiguous()
    labels = start["input.labels"].long()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    clipped = 0
    for step in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith("head.fc"):
                    continue
                w_norm = unitwise_norm(p).clamp(min=1e-3)
                g_norm = unitwise_norm(p.grad)
                max_norm = w_norm * 0.01
                clip = g_norm > max_norm
                if step == 0:
                    clipped += int(clip.sum())
                p.grad.copy_(torch.where(clip, p.grad * (max_norm / g_norm.clamp(min=1e-6)), p.grad))
        opt.step()
    tensors = {name: p.detach() for name, p in model.named_parameters()}
    tensors["clipped.units"] = torch.tensor([float(clipped)])
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "tiny_sgd_agc.safetensors"))
    print("tiny_sgd_agc: AGC clipped", clipped, "units in step 1")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="tests/golden/nfnet")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    write_std_conv(args.out)
    write_tiny(args.out)
    write_tiny_sgd(args.out)


if __name__ == "__main__":
    main()
