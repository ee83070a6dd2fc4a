#pragma once
// vitscale: Vision Transformers at the scales of their papers, on any Kokkos execution space.
// The umbrella header: everything that needs no optional dependency.

#include <vitscale/core/arena.hpp>
#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/core/precision.hpp>
#include <vitscale/core/random.hpp>
#include <vitscale/core/spaces.hpp>
#include <vitscale/core/type_list.hpp>
#include <vitscale/core/version.hpp>
#include <vitscale/core/views.hpp>

#include <vitscale/config/accounting.hpp>
#include <vitscale/config/describe.hpp>
#include <vitscale/config/nfnet_presets.hpp>
#include <vitscale/config/optimizer_state.hpp>
#include <vitscale/config/options.hpp>
#include <vitscale/config/presets.hpp>
#include <vitscale/config/shape.hpp>
#include <vitscale/config/tensors.hpp>

#include <vitscale/kernels/activations.hpp>
#include <vitscale/kernels/attention.hpp>
#include <vitscale/kernels/dropout.hpp>
#include <vitscale/kernels/gemm.hpp>
#include <vitscale/kernels/layernorm.hpp>
#include <vitscale/kernels/pooling.hpp>
#include <vitscale/kernels/qk_norm.hpp>
#include <vitscale/kernels/reduction.hpp>
#include <vitscale/kernels/residual.hpp>
#include <vitscale/kernels/softmax.hpp>

#include <vitscale/model/init.hpp>
#include <vitscale/model/nfnet.hpp>
#include <vitscale/model/parameters.hpp>
#include <vitscale/model/posemb.hpp>
#include <vitscale/model/vit.hpp>

#include <vitscale/io/dispatch.hpp>
#include <vitscale/io/parameters.hpp>
#include <vitscale/io/safetensors.hpp>

#include <vitscale/eval/fewshot.hpp>
#include <vitscale/eval/metrics.hpp>
