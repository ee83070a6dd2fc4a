// The catalogue (examples/catalogue/catalogue.hpp) with files of timm's layout. For one timm model per head
// kind (tests/golden/catalogue/timm_logits.json, tests/reference/catalogue_reference.py): a file is written
// under the names and shapes of the expected entry's tensor table (which must be timm's state dict: same
// count, parameters and names), with the reference script's formula values and no vitscale.* metadata, as
// a timm export; io::infer_shape and catalogue::open must choose that entry, and its logits on the formula
// images must be timm's. Three files stay in the working folder for the classify tests (examples/classify.cmake).
#include "catalogue/catalogue.hpp"

#include <support/files.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/io/dispatch.hpp>
#include <vitscale/io/safetensors.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vs = vitscale;
namespace bodies = catalogue::bodies;
namespace opt = vs::opt;

namespace {

// The reference script's formula for tensor `k` (its rank among the sorted names), in double, then float.
std::vector<float> formula(const std::string& name, const std::vector<std::int64_t>& shape, int k) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  const std::size_t dot = name.rfind('.');
  // The module's own name: "norm1" in "blocks.0.norm1.weight" (the script's name.rsplit(".", 2)[-2]).
  const std::size_t prev = dot == std::string::npos || dot == 0 ? std::string::npos : name.rfind('.', dot - 1);
  const std::size_t from = prev == std::string::npos ? 0 : prev + 1;
  const std::string module = dot == std::string::npos ? "" : name.substr(from, dot - from);
  const bool weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
  const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const double base = std::sin(0.731 * double(i) + 1.913 * k + 0.5);
    double x;
    if (weight && module.find("norm") != std::string::npos) x = 1.0 + 0.1 * base;
    else if (bias) x = 0.02 * base;
    else if (shape.size() >= 2 && shape[0] > 1) x = base / std::sqrt(double(n) / double(shape[0]));
    else x = 0.02 * base;
    if (name == "head.weight") x *= 10.0;
    v[std::size_t(i)] = static_cast<float>(x);
  }
  return v;
}

struct written {
  int tensors = 0;
  std::int64_t params = 0;
  std::string names_hash;
};

std::string fnv1a64(const std::string& text) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : text) h = (h ^ c) * 0x100000001B3ull;
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

// Shape's tensors under timm's names at `resolution`, formula values; with vitscale.* metadata if asked.
template <class Shape>
written write_file(const std::string& path, int resolution, bool metadata = false) {
  const auto table = vs::tensor_table<Shape>(resolution);
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> tensors;
  for (const auto& t : table)
    tensors.emplace_back(t.full_name(), std::vector<std::int64_t>(t.dims.begin(), t.dims.begin() + t.rank));
  std::sort(tensors.begin(), tensors.end());
  std::vector<std::vector<float>> values;
  values.reserve(tensors.size());
  vs::io::safetensors_writer w;
  written out;
  std::string lines;
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    const auto& [name, shape] = tensors[k];
    values.push_back(formula(name, shape, int(k)));
    w.add(name, shape, values.back().data());
    out.params += std::int64_t(values.back().size());
    lines += name + ":";
    for (std::size_t d = 0; d < shape.size(); ++d) lines += (d ? "," : "") + std::to_string(shape[d]);
    lines += "\n";
  }
  if (metadata)
    for (const auto& [key, value] : vs::io::shape_metadata<Shape>(resolution)) w.set_metadata(key, value);
  w.write(path);
  out.tensors = int(tensors.size());
  out.names_hash = fnv1a64(lines);
  return out;
}

// The reference script's images: [2, res, res, 3], channels last.
catalogue::host_images formula_images(int res) {
  catalogue::host_images x("images", 2, res, res, 3);
  for (int b = 0; b < 2; ++b)
    for (int y = 0; y < res; ++y)
      for (int i = 0; i < res; ++i)
        for (int c = 0; c < 3; ++c)
          x(b, y, i, c) = static_cast<float>(std::sin(0.05 * y * (b + 1) + 0.031 * i + 1.7 * c + 0.4 * b));
  return x;
}

template <class Shape>
void check_timm_case(const std::string& name, const std::string& expected_name, bool keep = false) {
  static const nlohmann::json golden =
      vs::test::load_golden_json("catalogue", "timm_logits.json", "catalogue_reference.py");
  const nlohmann::json& ref = golden.at("models").at(name);
  const int res = ref.at("resolution").get<int>();
  const std::string path = "catalogue_" + name + ".safetensors";
  INFO(name << " (timm's " << ref.at("timm_model").get<std::string>() << " " << ref.at("kwargs").dump() << ")");
  const written w = write_file<Shape>(path, res);
  // The entry's table is timm's state dict.
  CHECK(w.tensors == ref.at("tensors").get<int>());
  CHECK(w.params == ref.at("params").get<std::int64_t>());
  CHECK(w.names_hash == ref.at("names_hash").get<std::string>());

  const vs::shape_descriptor found = vs::io::infer_shape(path);
  CHECK(!found.heads.has_value());  // a timm file: the heads are not known
  const auto model = catalogue::open(found);
  REQUIRE(model);
  CHECK(model->shape().to_string() == vs::describe<Shape>().to_string());
  CHECK(model->name() == expected_name);
  CHECK(model->resolution() == res);
  CHECK(model->classes() == ref.at("classes").get<int>());
  model->load(path);
  const std::vector<float> logits = model->predict(formula_images(res));
  const int classes = model->classes();
  REQUIRE(logits.size() == std::size_t(2 * classes));
  // fp32 against timm's fp32: logits of a few units agree to ~1e-5; 2e-4 leaves room for the summation order.
  const double tol = 2e-4;
  for (int b = 0; b < 2; ++b) {
    const nlohmann::json& img = ref.at("images").at(std::size_t(b));
    const float* row = logits.data() + std::size_t(b) * std::size_t(classes);
    const auto first = img.at("first").get<std::vector<double>>();
    for (std::size_t c = 0; c < first.size(); ++c) CHECK(std::fabs(row[c] - first[c]) <= tol);
    const auto top = img.at("top").get<std::vector<int>>();
    const auto top_logits = img.at("top_logits").get<std::vector<double>>();
    for (std::size_t j = 0; j < top.size(); ++j) CHECK(std::fabs(row[top[std::size_t(j)]] - top_logits[j]) <= tol);
    double sum = 0, sumsq = 0, best = -1e30;
    for (int c = 0; c < classes; ++c) {
      sum += row[c];
      sumsq += double(row[c]) * row[c];
      best = std::max(best, double(row[c]));
    }
    // timm's top-1 logit is the largest here too (its class may tie with the next within the tolerance).
    CHECK(std::fabs(best - top_logits[0]) <= tol);
    const double ref_sumsq = img.at("sumsq").get<double>();
    CHECK(std::fabs(sum - img.at("sum").get<double>()) <= 1e-5 * std::sqrt(classes * ref_sumsq) + 1e-4);
    CHECK(std::fabs(sumsq - ref_sumsq) <= 1e-4 * ref_sumsq);
  }
  // Features: the pooled representation the head reads.
  CHECK(model->features(formula_images(res)).size() == std::size_t(2 * Shape::features));

  // The same tensors with vitscale's metadata (heads, GELU, norm): the same entry.
  const std::string with_metadata = "catalogue_" + name + "_vitscale.safetensors";
  write_file<Shape>(with_metadata, res, true);
  const vs::shape_descriptor exact = vs::io::infer_shape(with_metadata);
  CHECK(exact.heads == Shape::heads);
  CHECK(catalogue::open(exact)->shape().to_string() == vs::describe<Shape>().to_string());
  // Files of 22 to 124 MB: only those the classify tests read stay.
  std::remove(with_metadata.c_str());
  if (!keep) std::remove(path.c_str());
}

template <class... S>
void check_lists_every(const std::string& message, vs::type_list<S...>) {
  for (const std::string& entry : {vs::describe<S>().to_string()...})
    CHECK_MESSAGE(message.find(entry) != std::string::npos, "the candidates do not list " << entry);
}

}  // namespace

TEST_CASE("timm files of the catalogue's shapes: their entry, at their resolution, with timm's logits") {
  SUBCASE("class token, 224 px") { check_timm_case<bodies::ti16>("ti16_cls_224", "ViT-Ti/16"); }
  SUBCASE("class token, 384 px (the same entry)") { check_timm_case<bodies::ti16>("ti16_cls_384", "ViT-Ti/16", true); }
  SUBCASE("GAP") { check_timm_case<catalogue::entry<bodies::ti16, opt::pool_gap>>("ti16_gap", "ViT-Ti/16"); }
  SUBCASE("GAP + fc_norm") {
    check_timm_case<catalogue::entry<bodies::ti16, opt::pool_gap_fc_norm>>("ti16_gap_fc_norm", "ViT-Ti/16");
  }
  SUBCASE("MAP") { check_timm_case<catalogue::entry<bodies::ti16, opt::pool_map>>("ti16_map", "ViT-Ti/16", true); }
  SUBCASE("class token, 21843 classes") {
    check_timm_case<catalogue::entry<bodies::s32, opt::classes<21843>>>("s32_cls_in21k", "ViT-S/32");
  }
}

TEST_CASE("a shape the catalogue does not hold: the shape found and every candidate") {
  // timm's ViT-Ti/16 fine-tuned to 10 classes (written for classify's test too).
  write_file<catalogue::entry<bodies::ti16, opt::classes<10>>>("catalogue_unknown.safetensors", 224);
  const std::string message =
      vs::test::error_of([] { catalogue::open(vs::io::infer_shape("catalogue_unknown.safetensors")); });
  CHECK(message.find("no compiled shape fits the file's shape\n  depth 12, width 192, heads ?") != std::string::npos);
  CHECK(message.find("10 classes") != std::string::npos);
  CHECK(message.find("candidates (34):") != std::string::npos);
  check_lists_every(message, catalogue::shapes{});

  // big_vision's tanh GELU, recorded by vitscale's metadata: no entry (the catalogue's are timm's erf GELU).
  write_file<catalogue::entry<bodies::ti16, opt::pool_map, opt::gelu_tanh>>("catalogue_tanh.safetensors", 224, true);
  CHECK(vs::test::error_of([] { catalogue::open(vs::io::infer_shape("catalogue_tanh.safetensors")); })
            .find("no compiled shape fits the file's shape") != std::string::npos);
  std::remove("catalogue_tanh.safetensors");
}

TEST_CASE("the catalogue's entries") {
  static_assert(catalogue::shapes::size == 34);
  CHECK(catalogue::body_name(vs::describe<bodies::l32>()) == "ViT-L/32");
  CHECK(catalogue::body_name(vs::describe<catalogue::entry<bodies::b16, opt::pool_map>>()) == "ViT-B/16");
  CHECK(catalogue::body_name(vs::describe<catalogue::entry<bodies::b16, opt::gelu_tanh>>()) == "ViT-B/16");
  CHECK(catalogue::body_name(vs::describe<vs::vit_shape<2, 64, 2, 256, 16>>()).empty());
}
