// Choosing the compile-time shape from a file (include/vitscale/io/dispatch.hpp, config/describe.hpp):
// describe<Shape>() and infer_shape() agree for files save_parameters wrote — class token with and without a
// position entry, GAP, MAP, a parallel ViT-22B-style block, sin-cos position embeddings, pre-logits, tanh
// GELU, shapes that differ only in their heads — and dispatch runs the right instantiation; a file no
// candidate fits, or one that fits two, is an error that prints the shape found.
#include <doctest/doctest.h>
#include <support/files.hpp>
#include <vitscale/io/dispatch.hpp>
#include <vitscale/io/parameters.hpp>
#include <vitscale/config/presets.hpp>
#include <vitscale/model/vit.hpp>

#include <array>
#include <string>
#include <type_traits>
#include <vector>

using namespace vitscale;

namespace {

template <class... More>
using base = vit_shape<2, 32, 2, 64, 4, options<opt::classes<5>, opt::channels<1>, opt::resolution<16>, More...>>;
using cls_a = base<>;
using cls_heads4 = vit_shape<2, 32, 4, 64, 4, options<opt::classes<5>, opt::channels<1>, opt::resolution<16>>>;
using cls_no_entry = base<opt::cls_posemb<false>>;
using gap_avg = base<opt::pool_gap>;
using map_head = base<opt::pool_map>;
using par22b = base<opt::parallel_block, opt::qk_norm<>, opt::qkv_bias<false>, opt::layer_norm<false, false>,
                      opt::pool_map>;
using parallel_bias = base<opt::parallel_block, opt::pool_gap>;
using sincos_gap = base<opt::sincos_posemb, opt::pool_gap>;
using tanh_prelogits = base<opt::gelu_tanh, opt::pre_logits<16>, opt::channels<3>>;
using uncentered = base<opt::layer_norm<false, true>>;
using gap_fc_norm = base<opt::pool_gap_fc_norm>;

using all_shapes = type_list<cls_a, cls_heads4, cls_no_entry, gap_avg, map_head, par22b, parallel_bias, sincos_gap,
                             tanh_prelogits, uncentered, gap_fc_norm>;

static_assert(describe<presets::vit_b16>().heads == 12 && describe<presets::vit_22b>().qk_norm &&
                  describe<presets::vit_22b>().norm_centered == false,
              "describe is constexpr");
static_assert(matches(describe<gap_avg>(), describe<gap_avg>()) && !matches(describe<gap_avg>(), describe<map_head>()), "");

// What save_parameters needs of a model, without a model: the shape's table, every value zero.
template <class Shape>
struct table_model {
  using shape = Shape;
  using param_type = float;
  struct arena {
    std::array<tensor_info, tensor_count<Shape>()> t;
    const auto& table() const { return t; }
  };
  int res;
  arena a;
  explicit table_model(int resolution = Shape::resolution) : res(resolution), a{tensor_table<Shape>(resolution)} {}
  const arena& parameters() const { return a; }
  std::vector<float> parameter(int i) const { return std::vector<float>(std::size_t(a.t[i].numel()), 0.0f); }
  int resolution() const { return res; }
};

// The tensors alone, no metadata (as a timm export).
template <class Shape>
void save_bare(const std::string& path, int resolution = Shape::resolution) {
  const auto table = tensor_table<Shape>(resolution);
  std::vector<std::vector<float>> values;
  values.reserve(table.size());
  io::safetensors_writer w;
  for (const auto& t : table) {
    values.emplace_back(std::size_t(t.numel()), 0.0f);
    w.add(t.full_name(), std::vector<std::int64_t>(t.dims.begin(), t.dims.begin() + t.rank), values.back().data());
  }
  w.write(path);
}

template <class T, class... S>
constexpr int index_of(type_list<S...>) {
  int index = -1, i = 0;
  ((index = (index < 0 && std::is_same<T, S>::value) ? i : index, ++i), ...);
  return index;
}

// The index in all_shapes of the shape dispatch picks.
template <class List>
int dispatched(const shape_descriptor& found) {
  return io::dispatch<List>(found, [](auto tag) { return index_of<typename decltype(tag)::type>(all_shapes{}); });
}

template <class Shape, int Index>
void round_trip(int resolution) {
  CAPTURE(describe<Shape>().to_string());
  const std::string path = "dispatch_test.safetensors";
  io::save_parameters(table_model<Shape>(resolution), path, {{"mean", "0.5"}});
  const shape_descriptor found = io::infer_shape(path);
  CHECK(matches(describe<Shape>(), found));
  CHECK(found.heads == Shape::heads);
  CHECK(found.resolution == resolution);
  shape_descriptor expected = describe<Shape>();
  expected.resolution = resolution;
  CHECK(found.to_string() == expected.to_string());  // every field known, the resolution the file's
  CHECK(io::safetensors_reader(path).metadata().at("mean") == "0.5");  // the caller's keys are kept
  CHECK(dispatched<all_shapes>(found) == Index);
}

}  // namespace

TEST_CASE("describe and infer_shape agree; dispatch picks the shape that wrote the file") {
  round_trip<cls_a, 0>(16);
  round_trip<cls_heads4, 1>(16);
  round_trip<cls_no_entry, 2>(24);
  round_trip<gap_avg, 3>(16);
  round_trip<map_head, 4>(32);
  round_trip<par22b, 5>(16);
  round_trip<parallel_bias, 6>(16);
  round_trip<sincos_gap, 7>(20);
  round_trip<tanh_prelogits, 8>(16);
  round_trip<uncentered, 9>(16);
  round_trip<gap_fc_norm, 10>(16);
}

TEST_CASE("a real model: save, infer, dispatch, load at the file's resolution") {
  const std::string path = "dispatch_model_test.safetensors";
  vit<gap_avg> model(init::timm{3}, 24);
  io::save_parameters(model, path);
  const shape_descriptor found = io::infer_shape(path);
  REQUIRE(found.resolution == 24);
  const bool same = io::dispatch<type_list<map_head, gap_avg>>(found, [&](auto tag) {
    using shape = typename decltype(tag)::type;
    if constexpr (std::is_same<shape, gap_avg>::value) {
      vit<shape> loaded(*found.resolution);
      io::load_parameters(loaded, path);
      bool equal = true;
      for (int i = 0; i < int(loaded.parameters().table().size()); ++i) equal = equal && loaded.parameter(i) == model.parameter(i);
      return equal;
    } else {
      return false;
    }
  });
  CHECK(same);
}

TEST_CASE("no candidate fits: the error prints the shape found and the candidates") {
  const std::string path = "dispatch_test.safetensors";
  io::save_parameters(table_model<map_head>(), path);
  const shape_descriptor found = io::infer_shape(path);
  const std::string message = test::error_of([&] { dispatched<type_list<cls_a, gap_avg>>(found); });
  CHECK(message.find(found.to_string()) != std::string::npos);
  CHECK(message.find("pool map") != std::string::npos);
  CHECK(message.find(describe<gap_avg>().to_string()) != std::string::npos);
  CHECK(message.find("candidates (2)") != std::string::npos);
}

TEST_CASE("a file without vitscale metadata: unknown heads are fine unless two candidates fit") {
  const std::string path = "dispatch_bare_test.safetensors";
  save_bare<cls_heads4>(path);
  const shape_descriptor found = io::infer_shape(path);
  CHECK(!found.heads);
  CHECK(!found.mlp_activation);
  CHECK(found.to_string().find("heads ?") != std::string::npos);
  CHECK(dispatched<type_list<gap_avg, cls_heads4>>(found) == 1);
  const std::string message = test::error_of([&] { dispatched<type_list<cls_a, cls_heads4>>(found); });
  CHECK(message.find("fits more than one candidate") != std::string::npos);
  CHECK(message.find("vitscale.heads") != std::string::npos);
  CHECK(message.find(found.to_string()) != std::string::npos);
  // QK-norm reveals the heads (q_norm has head_dim entries) even without metadata.
  save_bare<par22b>(path);
  CHECK(io::infer_shape(path).heads == 2);
}

TEST_CASE("bad files and bad metadata are errors that say what is wrong") {
  const std::string path = "dispatch_bad_test.safetensors";
  {
    io::safetensors_writer w;
    const float x[4] = {};
    w.add("head.weight", {2, 2}, x);
    w.write(path);
  }
  CHECK(test::error_of([&] { io::infer_shape(path); }).find("no blocks.N.*") != std::string::npos);
  save_bare<gap_avg>(path);
  {
    io::safetensors_reader in(path);
    io::safetensors_writer w;
    std::vector<std::vector<float>> values;
    values.reserve(in.tensors().size());
    for (const auto& e : in.tensors()) {
      values.emplace_back(std::size_t(e.numel()));
      in.read(e.name, values.back().data(), values.back().size());
      w.add(e.name, e.shape, values.back().data());
    }
    w.set_metadata("vitscale.heads", "5");
    w.write(path + ".h5");
  }
  CHECK(test::error_of([&] { io::infer_shape(path + ".h5"); }).find("does not divide width 32") != std::string::npos);
}
