#pragma once
// The Fashion-MNIST ladder of examples/train --model: ViT shapes from tiny to small, for scaling studies on this
// data (Scaling ViT's Figure 2 in miniature: benchmarks/scaling/README.md). Every rung takes the example's input
// (28 x 28 grey images, patches of 4 pixels: 49 tokens), pools by global average and has 10 classes; the rungs
// differ in depth, width, heads and MLP width only. "s" is the example's own model (fmnist_model.hpp) and the
// default, compiled with every optimizer in train.cpp; the other rungs are compiled with AdamW only (the
// scaling studies' optimizer; each optimizer is another instantiation of the whole training loop), in units of
// their own (model_ladder_*.cpp) so that they build in parallel with train.cpp and train.cpp compiles none of them.
#include <vitscale/io/dispatch.hpp>
#include <vitscale/vit.hpp>

#include "fmnist_model.hpp"
#include "train_run.hpp"

#include <array>
#include <cstddef>
#include <cstdio>
#include <string>
#include <type_traits>

namespace model_ladder {

namespace vs = vitscale;

template <int Depth, int Width, int Heads, int Mlp>
using fmnist_shape = vs::vit_shape<Depth, Width, Heads, Mlp, 4,
                                   vs::options<vs::opt::classes<10>, vs::opt::channels<1>, vs::opt::resolution<28>,
                                               vs::opt::pool_gap>>;

// Each rung about 3.5 to 5 times the training FLOPs of the one below (--help prints them).
using xxs = fmnist_shape<2, 32, 2, 64>;
using xs = fmnist_shape<3, 64, 2, 128>;
using s = fmnist_vit;
using m = fmnist_shape<6, 192, 3, 384>;
static_assert(std::is_same_v<s, fmnist_shape<4, 128, 4, 256>>,
              "the ladder's s is the example's model: fmnist_model.hpp and fmnist_shape must describe the same input");

using shapes = vs::type_list<xxs, xs, s, m>;
inline constexpr std::array<const char*, shapes::size> names = {"xxs", "xs", "s", "m"};
inline constexpr std::size_t default_rung = 2;  // s: what train trained before the ladder existed

// Trains a rung other than s with AdamW (train_example::optimizer_set::adamw). Explicitly instantiated in
// model_ladder_*.cpp; the extern declarations keep every other unit from compiling the training loop again.
template <class Shape>
int train_rung(const train_example::run_options& o) {
  return train_example::train_shape<Shape, train_example::optimizer_set::adamw>(o);
}
extern template int train_rung<xxs>(const train_example::run_options&);
extern template int train_rung<xs>(const train_example::run_options&);
extern template int train_rung<m>(const train_example::run_options&);

namespace detail {
template <class... S, class F>
int with_rung(vs::type_list<S...>, std::size_t i, F& f) {
  int result = 0;
  std::size_t k = 0;
  (void)((k++ == i ? (result = f(vs::io::shape_tag<S>{}), true) : false) || ...);
  return result;
}

template <class... S>
int rung_fitting(vs::type_list<S...>, const vs::shape_descriptor& found) {
  int chosen = -1, k = 0;
  (void)((vs::matches(vs::describe<S>(), found) ? (chosen = k, true) : (++k, false)) || ...);
  return chosen;
}

template <class Shape>
std::string describe_rung(const char* name) {
  char line[200];
  std::snprintf(line, sizeof line, "%s: depth %d, width %d, %d heads, MLP %d, %lld parameters, %.3g MFLOPs per "
                "training image (forward + backward)", name, Shape::depth, Shape::width, Shape::heads, Shape::mlp_dim,
                static_cast<long long>(Shape::params().total), double(Shape::flops().training) * 1e-6);
  return line;
}

template <class... S>
std::string describe_all(vs::type_list<S...>) {
  std::string text;
  std::size_t k = 0;
  ((text += std::string("\n  ") + describe_rung<S>(names[k]) + (k == default_rung ? " (the default)" : ""), ++k),
   ...);
  return text;
}
}  // namespace detail

// Calls f(vitscale::io::shape_tag<Shape>{}) with the ladder's i-th shape and returns what it returns (an int).
template <class F>
int with_rung(std::size_t i, F&& f) {
  return detail::with_rung(shapes{}, i, f);
}

// The index of the rung called `name`; an unknown name is an error listing the names.
inline std::size_t rung_named(const std::string& name) {
  std::string known;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (name == names[i]) return i;
    known += std::string(i ? ", " : "") + names[i];
  }
  vs::detail::fail("--model '", name, "' is not a shape of the Fashion-MNIST ladder (", known,
                   "; train --help describes them)");
}

// The index of the rung whose shape a file holds (`found`: io::infer_shape), or -1 if none.
inline int rung_fitting(const vs::shape_descriptor& found) { return detail::rung_fitting(shapes{}, found); }

// One line per rung (name, depth, width, heads, MLP, parameters, training FLOPs per image), for --help.
inline std::string describe() { return detail::describe_all(shapes{}); }

}  // namespace model_ladder
