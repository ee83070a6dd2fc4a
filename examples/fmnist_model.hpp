#pragma once
// The Fashion-MNIST example's model, shared by examples/train.cpp and examples/bench_vit.cpp (--model fmnist)
// so that the benchmark measures exactly what the example trains.
#include <vitscale/vit.hpp>

// A small ViT for 28×28 grey images: patches of 4 pixels (7×7 = 49 tokens), global average pooling.
using fmnist_vit = vitscale::vit_shape<4, 128, 4, 256, 4,
                                       vitscale::options<vitscale::opt::classes<10>, vitscale::opt::channels<1>,
                                                         vitscale::opt::resolution<28>, vitscale::opt::pool_gap>>;
