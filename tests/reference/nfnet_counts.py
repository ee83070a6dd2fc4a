#!/usr/bin/env python3
"""Oracle for vitscale's NFNet accounting (include/vitscale/config/nfnet_*.hpp): parameter counts, forward
FLOPs and multiply-adds, per-block beta, and F0's parameter table, measured on timm's NormFreeNet.

    /work/venv/bin/python tests/reference/nfnet_counts.py            # writes the two files below

writes tests/reference/nfnet_counts.txt (counts, betas, sizes) and tests/golden/nfnet_f0_params.txt
("name dim dim ..." per line, timm's named_parameters order; a scalar has no dims).

Models: timm's dm_nfnet_f0..f6 as registered; F7 is the same DeepMind-compatible configuration
(_dm_nfnet_cfg) at depths (8, 16, 48, 24) — timm registers only nfnet_f7, which has no skipinit gains and
non-SAME padding (its count is printed too, for reference); the Fashion-MNIST shape of nfnet_presets.hpp.
Models are built on the meta device (no memory, no arithmetic); FLOPs are torch.utils.flop_counter's, which
counts convolutions and matrix products only, 2 per multiply-add (vitscale's convention); MACs = FLOPs / 2.
"""
import os
import sys

import torch
import timm
from timm.models.nfnet import NormFreeNet, NfCfg, _dm_nfnet_cfg
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name: (constructor, test resolution) — the presets of include/vitscale/config/nfnet_presets.hpp
def dm(name):
    return lambda: timm.create_model(name, pretrained=False, device="meta")

def fmnist():
    cfg = NfCfg(depths=(1, 1, 1, 1), channels=(32, 64, 96, 128), stem_type="deep_quad", stem_chs=16,
                group_size=16, bottle_ratio=0.5, extra_conv=True, gamma_in_act=True, same_padding=True,
                skipinit=True, num_features=256, act_layer="gelu", attn_layer="se",
                attn_kwargs=dict(rd_ratio=0.5))
    return NormFreeNet(cfg, num_classes=10, in_chans=1, device="meta")

def f0_tuned():  # nfnet_f0::with<skipinit<false>, se_ratio<0>, feature_multiplier<0>, symmetric_padding, classes<10>, channels<1>, group_width<0>>
    cfg = NfCfg(depths=(1, 2, 6, 3), channels=(256, 512, 1536, 1536), stem_type="deep_quad", stem_chs=128,
                group_size=None, bottle_ratio=0.5, extra_conv=True, gamma_in_act=True, same_padding=False,
                skipinit=False, num_features=0, act_layer="gelu", attn_layer=None)
    return NormFreeNet(cfg, num_classes=10, in_chans=1, device="meta")

MODELS = [(f"F{k}", dm(f"dm_nfnet_f{k}"), r) for k, r in enumerate((256, 320, 352, 416, 512, 544, 576))]
MODELS.append(("F7", lambda: NormFreeNet(_dm_nfnet_cfg(depths=(8, 16, 48, 24)), device="meta"), 608))
MODELS.append(("fmnist", fmnist, 28))
MODELS.append(("F0-tuned", f0_tuned, 256))


def parts(model):
    out = dict(stem=0, stages=0, final_conv=0, head=0)
    for n, p in model.named_parameters():
        out[n.split(".")[0]] += p.numel()
    return out


def flops(model, res, chans):
    x = torch.empty(1, chans, res, res, device="meta")
    with FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops()


def main():
    lines = ["# written by tests/reference/nfnet_counts.py (timm %s, torch %s)" % (timm.__version__, torch.__version__),
             "# model resolution params stem stages final_conv head forward_flops forward_macs"]
    for name, make, res in MODELS:
        m = make().eval()
        p = parts(m)
        f = flops(m, res, m.in_chans)
        lines.append(f"{name} {res} {sum(p.values())} {p['stem']} {p['stages']} {p['final_conv']} {p['head']} {f} {f // 2}")
        if name == "F0":
            lines.append(f"F0@192 192 - - - - - {flops(m, 192, 3)} {flops(m, 192, 3) // 2}")
            lines.append(f"F0@224 224 - - - - - {flops(m, 224, 3)} {flops(m, 224, 3) // 2}")
            lines.append(f"F0@225 225 - - - - - {flops(m, 225, 3)} {flops(m, 225, 3) // 2}")  # odd sides all the way
            betas = [repr(b.beta) for s in m.stages for b in s]
            lines.append("# F0 per-block beta (stages.s.b in order), repr")
            lines.append("F0-beta " + " ".join(betas))
            # spatial size entering each block and after the stem at 256 px
            sizes = []
            x = torch.empty(1, 3, 256, 256, device="meta")
            x = m.stem(x)
            sizes.append(x.shape[-1])
            for s in m.stages:
                for b in s:
                    x = b(x)
                    sizes.append(x.shape[-1])
            lines.append("# F0 at 256 px: side after the stem, then after each block")
            lines.append("F0-sides " + " ".join(map(str, sizes)))
            with open(os.path.join(ROOT, "tests", "golden", "nfnet_f0_params.txt"), "w") as g:
                for n, prm in m.named_parameters():
                    g.write(" ".join([n] + [str(d) for d in prm.shape]) + "\n")
        if name == "F7":
            lines.append("# F7 per-block beta (stages.s.b in order), repr")
            lines.append("F7-beta " + " ".join(repr(b.beta) for s in m.stages for b in s))
            t = timm.create_model("nfnet_f7", pretrained=False, device="meta")
            lines.append(f"nfnet_f0-symmetric 256 - - - - - {flops(timm.create_model('nfnet_f0', device='meta'), 256, 3)} -")
            lines.append(f"# timm's nfnet_f7 (no skipinit gains, gamma in the conv): params {sum(q.numel() for q in t.parameters())}")
        print(lines[-1], file=sys.stderr)
    with open(os.path.join(ROOT, "tests", "reference", "nfnet_counts.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
