"""The values of tests/kernels/conv2d.cpp's PyTorch case: timm's SAME-padded grouped convolution.

timm.layers.create_conv2d(4, 4, 3, stride=2, padding='same', groups=2) is a Conv2dSame (TensorFlow's asymmetric
"SAME" padding, computed per input by pad_same). On a 5x4 input its padding is (top, bottom, left, right) =
(1, 1, 0, 1): the case vitscale's conv2d_same must reproduce. Inputs are small integers, so every value is exact in
float and the test compares exactly. Prints C++ initialisers in vitscale's layouts: x, dx, y NHWC; w, dw OIHW.

    /work/venv/bin/python tests/reference/conv2d_reference.py
"""
import torch
from timm.layers import create_conv2d

torch.manual_seed(0)
B, C, H, W = 1, 4, 5, 4
conv = create_conv2d(C, C, 3, stride=2, padding="same", groups=2, bias=True).double()
assert type(conv).__name__ == "Conv2dSame", type(conv)
with torch.no_grad():
    conv.weight.copy_((torch.arange(conv.weight.numel()) % 5 - 2).view_as(conv.weight).double())
    conv.bias.copy_(torch.tensor([1.0, -1.0, 2.0, 0.0]))
x = (torch.arange(B * C * H * W) % 7 - 3).double().view(B, H, W, C).permute(0, 3, 1, 2).requires_grad_()
y = conv(x)
r = (torch.arange(y.numel()) % 7 - 3).double().view(B, y.shape[2], y.shape[3], C).permute(0, 3, 1, 2)
(y * r).sum().backward()


def show(name, t):
    print(f"  const std::vector<double> {name}{{{', '.join(str(int(v)) for v in t.flatten().tolist())}}};")


print(f"// y is {list(y.shape)} (NCHW)")
show("torch_y", y.permute(0, 2, 3, 1))
show("torch_dx", x.grad.permute(0, 2, 3, 1))
show("torch_dw", conv.weight.grad)
show("torch_dbias", conv.bias.grad)
