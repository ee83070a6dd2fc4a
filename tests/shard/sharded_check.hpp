#pragma once
// The sharded model against the whole one: the same initial model, the same global batch, a few optimizer
// steps. run_whole() trains the unsharded model on all the images; run_mesh() trains, on one rank of a
// data × model mesh, that rank's shard on that rank's images, reduces the gradients over the mesh and steps
// the same optimizer, and measures how far its logits, gradients (first step) and final parameters are from
// the whole model's. Used under the in-process communicator (tests/shard/sharded_vit.cpp) and under mpirun
// (tests/shard/sharded_vit_mpi.cpp).
//
// Images: world = data·model ranks, each with `local` images; model rank j of data group d holds global
// images [(d·model + j)·local, ... + local). Every rank's dlogits are those of the mean loss of its own
// images, and reduce_gradients scales the summed gradients by 1/world: the gradient of the global mean, which
// is what the whole model computes on the whole batch.

#include <vitscale/config/sharding.hpp>
#include <vitscale/core/communicator.hpp>
#include <vitscale/model/vit.hpp>
#include <vitscale/shard/mesh.hpp>
#include <vitscale/shard/training.hpp>
#include <vitscale/train/loss.hpp>
#include <vitscale/train/optimizers.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace vitscale::test {

struct batch_data {
  int images = 0, resolution = 0, channels = 3, classes = 0;
  std::vector<float> pixels;  // [images, resolution, resolution, channels]
  std::vector<int> labels;
};

inline batch_data make_batch(int images, int resolution, int classes, std::uint32_t seed) {
  batch_data b{images, resolution, 3, classes, {}, {}};
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  b.pixels.resize(static_cast<std::size_t>(images) * resolution * resolution * 3);
  for (float& p : b.pixels) p = u(gen);
  std::uniform_int_distribution<int> c(0, classes - 1);
  for (int i = 0; i < images; ++i) b.labels.push_back(c(gen));
  return b;
}

// sgd_clipped: SGD-momentum after NFNet's AGC and global-norm clipping; adafactor: the ViT-G paper's, with its
// block-RMS update clipping.
enum class optimizer_kind { sgd_momentum, adamw, sgd_clipped, adafactor };

inline const char* name_of(optimizer_kind k) {
  switch (k) {
    case optimizer_kind::sgd_momentum: return "SGD-momentum";
    case optimizer_kind::adamw: return "AdamW";
    case optimizer_kind::sgd_clipped: return "SGD-momentum with AGC and global-norm clipping";
    case optimizer_kind::adafactor: return "Adafactor";
  }
  return "?";
}

// The clipping of sgd_clipped: both active on this test's models (the checks in sharded_vit.cpp say so).
inline constexpr double agc_lambda = 0.02, global_norm_max = 0.02;

struct whole_run {
  std::vector<std::vector<float>> logits;  // per step, [images · classes]
  std::vector<std::vector<float>> grads;   // first step, per tensor (full)
  std::vector<std::vector<float>> start;   // initial parameters, per tensor
  std::vector<std::vector<float>> params;  // after the last step, per tensor
};

struct mesh_errors {
  double logits = 0, grads = 0, params = 0;  // worst relative errors
  std::string worst_grad, worst_param;
  std::size_t collectives = 0, bytes = 0;
};

template <class Model>
auto make_optimizer(Model& model, optimizer_kind kind) {
  // Adam divides each gradient by its own running size: with the default ε (1e-8) an element whose gradient
  // nearly cancels moves by up to the learning rate on rounding noise alone, and the two runs would differ by
  // that noise, not by anything sharding did. ε = 1e-4 (below the gradients of this model but far above their
  // rounding) keeps the comparison about the update arithmetic. Adafactor's ε1 is added to g², so 1e-8 is the
  // same choice; its factored statistics and block RMS are what the sharded run must sum across the model axis.
  typename optimizer::adamw<Model>::options a;
  a.eps = 1e-4;
  a.weight_decay = {0.05, 0.05};
  typename optimizer::sgd_momentum<Model>::options s;
  s.weight_decay = {0.05, 0.05};
  s.momentum = 0.9;
  if (kind == optimizer_kind::sgd_clipped) s.clip = {global_norm_max, agc_lambda};
  typename optimizer::adafactor<Model>::options f;
  f.eps = 1e-8;
  f.clip_threshold = 1.0;
  f.min_dim_size_to_factor = 16;  // every block matrix of these small models is factored
  // Its first moment is stored in bf16: a last-bit difference in u (rounding, as between any two summation
  // orders) moves the stored moment by a bf16 ulp, 4e-3 of it, and the next steps carry that. b1 = 0 steps
  // with u itself; the bf16 moment is elementwise and has nothing to do with sharding.
  f.b1 = 0.0;
  f.weight_decay = {0.05, 0.05};
  struct stepper {
    std::unique_ptr<optimizer::adamw<Model>> adam;
    std::unique_ptr<optimizer::sgd_momentum<Model>> sgd;
    std::unique_ptr<optimizer::adafactor<Model>> factored;
    void step(double lr) {
      if (adam) adam->step(lr, lr);
      if (sgd) sgd->step(lr, lr);
      if (factored) factored->step(lr, lr);
    }
  } st;
  if (kind == optimizer_kind::adamw)
    st.adam = std::make_unique<optimizer::adamw<Model>>(model, a);
  else if (kind == optimizer_kind::adafactor)
    st.factored = std::make_unique<optimizer::adafactor<Model>>(model, f);
  else
    st.sgd = std::make_unique<optimizer::sgd_momentum<Model>>(model, s);
  return st;
}

template <class Space>
struct device_batch {
  using mem = typename Space::memory_space;
  Kokkos::View<float****, Kokkos::LayoutRight, mem> images;
  Kokkos::View<int*, Kokkos::LayoutRight, mem> labels;
  Kokkos::View<float**, Kokkos::LayoutRight, mem> dlogits;
  device_batch(const batch_data& b, int first, int count)
      : images("images", count, b.resolution, b.resolution, b.channels), labels("labels", count),
        dlogits("dlogits", count, b.classes) {
    auto hi = Kokkos::create_mirror_view(images);
    auto hl = Kokkos::create_mirror_view(labels);
    const std::size_t per = static_cast<std::size_t>(b.resolution) * b.resolution * b.channels;
    std::copy(b.pixels.begin() + first * per, b.pixels.begin() + (first + count) * per, hi.data());
    for (int i = 0; i < count; ++i) hl(i) = b.labels[first + i];
    Kokkos::deep_copy(images, hi);
    Kokkos::deep_copy(labels, hl);
  }
};

inline constexpr double learning_rate = 1e-2;

template <class Shape, class Space>
whole_run run_whole(const batch_data& b, optimizer_kind kind, int steps, std::uint64_t seed,
                    regularization reg = {}) {
  using model_t = vit<Shape, precision::fp32, Space>;
  model_t model(init::timm{seed}, b.resolution);
  model.set_regularization(reg);
  device_batch<Space> d(b, 0, b.images);
  auto opt = make_optimizer(model, kind);
  whole_run r;
  const int n = model_t::parameters_type::count;
  for (int i = 0; i < n; ++i) r.start.push_back(model.parameter(i));
  for (int k = 0; k < steps; ++k) {
    auto logits = model.forward(d.images, static_cast<std::uint32_t>(k));
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), logits);
    r.logits.emplace_back(h.data(), h.data() + h.size());
    loss::softmax_xent(Space(), logits, d.labels, d.dlogits);
    model.backward(d.dlogits);
    if (k == 0)
      for (int i = 0; i < n; ++i) r.grads.push_back(model.gradient(i));
    opt.step(learning_rate);
  }
  for (int i = 0; i < n; ++i) r.params.push_back(model.parameter(i));
  return r;
}

// max |a − b| / max |b| (b: the reference; 0 when both are zero).
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    err = std::max(err, double(std::abs(a[i] - b[i])));
    scale = std::max(scale, double(std::abs(b[i])));
  }
  return scale > 0 ? err / scale : err;
}

// Elements whose gradient is zero in exact arithmetic, because softmax ignores a shift shared by all keys:
// the key norm's bias, and the key rows of a key bias (in_proj's [F | q | k | v] rows, MAP's [k | v]). Their
// computed gradient is rounding noise: it is compared against the model's largest gradient, not its own.
inline bool ends_with(const std::string& s, const char* tail) {
  const std::string t(tail);
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}
template <class Shape>
std::vector<char> exact_zero_gradient(const std::string& name, std::size_t count, const model_shard& shard) {
  std::vector<char> zero(count, 0);
  const std::size_t m = static_cast<std::size_t>(shard.count);
  const std::size_t D = Shape::width, fl = std::size_t(Shape::mlp_dim) / m, al = D / m;
  if (ends_with(name, "k_norm.bias")) std::fill(zero.begin(), zero.end(), 1);
  if (ends_with(name, "in_proj.bias")) std::fill(zero.begin() + (fl + al), zero.begin() + (fl + 2 * al), 1);
  if (name == "attn_pool.kv.bias") std::fill(zero.begin(), zero.begin() + D, 1);
  return zero;
}

// What sgd_clipped's clipping did on the whole model's first gradients: the AGC units it scaled down, and the
// global norm after AGC (above global_norm_max when global-norm clipping acts too).
struct clip_activity {
  int agc_units = 0, units = 0;
  double norm_after_agc = 0;
};
template <class Shape>
clip_activity clipping_on(const whole_run& whole, int resolution) {
  const auto table = tensor_table<Shape>(resolution);
  clip_activity a;
  double sum = 0;
  for (std::size_t i = 0; i < table.size(); ++i) {
    const bool rows = table[i].role == tensor_role::weight;
    const std::size_t cols = rows ? std::size_t(table[i].matrix_cols()) : whole.grads[i].size();
    for (std::size_t begin = 0; begin < whole.grads[i].size(); begin += cols) {
      double gg = 0, ww = 0;
      for (std::size_t k = begin; k < begin + cols; ++k) {
        gg += double(whole.grads[i][k]) * whole.grads[i][k];
        ww += double(whole.start[i][k]) * whole.start[i][k];
      }
      const double max_norm = agc_lambda * std::max(std::sqrt(ww), 1e-3);
      const double scale = std::sqrt(gg) < max_norm ? 1.0 : max_norm / std::max(std::sqrt(gg), 1e-6);
      a.agc_units += scale < 1.0;
      ++a.units;
      sum += gg * scale * scale;
    }
  }
  a.norm_after_agc = std::sqrt(sum);
  return a;
}

// reg: the whole model's regularisation; each rank sets first_image to its data group's first image, so that
// the mesh draws the whole model's dropout and drop-path masks.
template <class Shape, class Space>
mesh_errors run_mesh(communicator& world, int data, int model, int chunks, const batch_data& b,
                     const whole_run& whole, optimizer_kind kind, int steps, std::uint64_t seed,
                     regularization reg = {}) {
  using model_t = vit<Shape, precision::fp32, Space>;
  const int rank = world.rank(), size = world.size();
  if (size != data * model) detail::fail("run_mesh: ", size, " ranks for a ", data, "x", model, " mesh");
  const shard::mesh_communicators mesh = shard::make_mesh(world, data, model);
  communicator* model_axis = mesh.model_axis.get();
  communicator* data_axis = mesh.data_axis.get();
  const int local = b.images / size;
  model_t m(init::timm{seed}, b.resolution, Space(), model_parallel{model_axis, chunks});
  reg.first_image = static_cast<std::uint64_t>(mesh.data_index) * static_cast<std::uint64_t>(model * local);
  m.set_regularization(reg);
  device_batch<Space> in(b, rank * local, local);
  auto opt = make_optimizer(m, kind);
  shard::gradient_reducer<model_t> reducer(m, world, *data_axis, 1.0 / size);
  const auto full = tensor_table<Shape>(b.resolution);
  const model_shard shard = m.shard();
  auto expected_shard = [&](int i, const std::vector<float>& whole_tensor) {
    std::vector<float> out(static_cast<std::size_t>(m.parameters().info(i).numel()));
    extract_shard<Shape>(full[i], shard, whole_tensor.data(), out.data());
    return out;
  };
  mesh_errors e;
  const int n = model_t::parameters_type::count;
  for (int k = 0; k < steps; ++k) {
    auto logits = m.forward(in.images, static_cast<std::uint32_t>(k));
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), logits);
    const std::size_t classes = h.extent(1);
    const std::vector<float> mine(h.data(), h.data() + h.size());
    const std::vector<float> want(whole.logits[k].begin() + rank * local * classes,
                                  whole.logits[k].begin() + (rank + 1) * local * classes);
    e.logits = std::max(e.logits, relative_error(mine, want));
    loss::softmax_xent(Space(), logits, in.labels, in.dlogits);
    // Both ways of summing the gradients: overlapped with backward (even steps, the gradients checked below
    // included) and after it.
    if (k % 2 == 0) {
      m.backward(in.dlogits, &reducer);
      reducer.finish();
    } else {
      m.backward(in.dlogits);
      shard::reduce_gradients(m, world, *data_axis, 1.0 / size);
    }
    if (k == 0) {
      double scale = 0;  // the model's largest gradient
      for (int i = 0; i < n; ++i)
        for (float g : whole.grads[i]) scale = std::max(scale, double(std::abs(g)));
      for (int i = 0; i < n; ++i) {
        const auto want_g = expected_shard(i, whole.grads[i]);
        const auto got = m.gradient(i);
        const std::string name = full[i].full_name();
        const auto zero = exact_zero_gradient<Shape>(name, got.size(), shard);
        double err = 0, own = 0;
        for (std::size_t t = 0; t < got.size(); ++t)
          if (!zero[t]) own = std::max(own, double(std::abs(want_g[t])));
        for (std::size_t t = 0; t < got.size(); ++t)
          err = std::max(err, std::abs(double(got[t]) - want_g[t]) / (zero[t] || own == 0 ? scale : own));
        if (err > e.grads) e.grads = err, e.worst_grad = name;
      }
    }
    opt.step(learning_rate);
  }
  // Parameters: relative to the change the steps made to the tensor, so that the check sees the updates, once
  // the rounding of the stored parameter itself (a few float ulps of its value: the floor of any comparison
  // of p − lr·u) is taken off. The elements with an exactly-zero gradient moved by a noise-sized step:
  // compared against the largest change in the model.
  double largest = 0;
  for (int i = 0; i < n; ++i)
    for (std::size_t t = 0; t < whole.params[i].size(); ++t)
      largest = std::max(largest, double(std::abs(whole.params[i][t] - whole.start[i][t])));
  for (int i = 0; i < n; ++i) {
    const std::string name = full[i].full_name();
    const auto got = m.parameter(i), start = expected_shard(i, whole.start[i]), want = expected_shard(i, whole.params[i]);
    const auto zero = exact_zero_gradient<Shape>(name, got.size(), shard);
    double own = 0, err = 0;
    for (std::size_t t = 0; t < got.size(); ++t)
      if (!zero[t]) own = std::max(own, double(std::abs(want[t] - start[t])));
    for (std::size_t t = 0; t < got.size(); ++t) {
      const double ulps = 4 * 1.1920929e-7 * std::abs(double(want[t]));
      const double diff = std::max(0.0, std::abs(double(got[t]) - double(want[t])) - ulps);
      err = std::max(err, diff / (zero[t] || own == 0 ? largest : own));
    }
    if (err > e.params) e.params = err, e.worst_param = name;
  }
  e.collectives = m.communication().collectives;
  e.bytes = m.communication().bytes;
  return e;
}

}  // namespace vitscale::test
