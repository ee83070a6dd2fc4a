#pragma once
// vitscale: Vision Transformers at the scales of their papers, on any Kokkos execution space.
// The umbrella header: everything that needs no optional dependency.

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/core/precision.hpp>
#include <vitscale/core/spaces.hpp>
#include <vitscale/core/type_list.hpp>
#include <vitscale/core/version.hpp>

#include <vitscale/config/accounting.hpp>
#include <vitscale/config/optimizer_state.hpp>
#include <vitscale/config/options.hpp>
#include <vitscale/config/presets.hpp>
#include <vitscale/config/shape.hpp>
#include <vitscale/config/tensors.hpp>
