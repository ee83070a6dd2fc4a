#pragma once
// The definition of catalogue::make<Shape>: includes the whole model, so only the catalogue's translation units
// (and a program compiling a shape of its own) include it.

#include "inference_model.hpp"

#include <vitscale/config/presets.hpp>
#include <vitscale/vit.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace catalogue {
namespace detail {

template <class Shape>
class compiled_model final : public inference_model {
 public:
  explicit compiled_model(int resolution) : model_(resolution) {}

  vitscale::shape_descriptor shape() const override { return vitscale::describe<Shape>(); }
  std::string name() const override {
    const std::string preset(vitscale::presets::name<Shape>());
    return preset.empty() ? body_name(shape()) : preset;
  }
  int classes() const override { return Shape::num_classes; }
  int channels() const override { return Shape::in_channels; }
  int resolution() const override { return model_.resolution(); }
  int feature_width() const override { return Shape::features; }
  vitscale::io::load_report load(const std::string& path, const vitscale::io::load_options& options) override {
    return vitscale::io::load_parameters(model_, path, options);
  }
  std::vector<float> predict(const host_images& images) override {
    return to_host(model_.predict(images));
  }
  std::vector<float> features(const host_images& images) override {
    return to_host(model_.features(images).pooled);
  }

 private:
  template <class View>
  static std::vector<float> to_host(const View& v) {
    auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
    std::vector<float> out(host.extent(0) * host.extent(1));
    for (std::size_t i = 0; i < host.extent(0); ++i)
      for (std::size_t j = 0; j < host.extent(1); ++j) out[i * host.extent(1) + j] = static_cast<float>(host(i, j));
    return out;
  }

  vitscale::vit<Shape> model_;
};

}  // namespace detail

template <class Shape>
std::unique_ptr<inference_model> make(int resolution) {
  return std::make_unique<detail::compiled_model<Shape>>(resolution);
}

}  // namespace catalogue
