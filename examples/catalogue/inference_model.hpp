#pragma once
// catalogue::inference_model: a compiled ViT shape behind a run-time interface, for inference (predict and
// features, no backward), so that a program can hold a model whose shape it chose from a file without
// compiling that shape itself. make<Shape>() is defined in inference_model_impl.hpp and instantiated once
// per catalogue shape in the catalogue's translation units (catalogue/shapes_*.cpp); a program adds its own
// shapes by including inference_model_impl.hpp (examples/classify.cpp does, for its Fashion-MNIST model).

#include <vitscale/config/describe.hpp>
#include <vitscale/io/parameters.hpp>

#include <Kokkos_Core.hpp>

#include <memory>
#include <string>
#include <vector>

namespace catalogue {

// Images [B, H, W, C] on the host, at the model's resolution and channels; logits and features come back as
// host floats, row-major.
using host_images = Kokkos::View<float****, Kokkos::LayoutRight, Kokkos::HostSpace>;

class inference_model {
 public:
  virtual ~inference_model() = default;
  // The compiled shape (every field known) and its name ("ViT-B/16": a preset or body_name; else empty).
  virtual vitscale::shape_descriptor shape() const = 0;
  virtual std::string name() const = 0;
  virtual int classes() const = 0;
  virtual int channels() const = 0;
  virtual int resolution() const = 0;
  // The width of the pooled representation the classifier reads (features()'s second dimension).
  virtual int feature_width() const = 0;
  // Reads the parameters from a safetensors file under timm's names (io::load_parameters).
  virtual vitscale::io::load_report load(const std::string& path, const vitscale::io::load_options& options = {}) = 0;
  // images [B, res, res, C] -> logits [B, classes], no dropout, nothing kept for backward.
  virtual std::vector<float> predict(const host_images& images) = 0;
  // images [B, res, res, C] -> the pooled representation [B, feature_width()] (vit::features' `pooled`).
  virtual std::vector<float> features(const host_images& images) = 0;
};

// "ViT-B/16" for the bodies the papers name (any head, classes or resolution), else "".
inline std::string body_name(const vitscale::shape_descriptor& d) {
  struct known {
    int depth, width, heads, mlp;
    const char* name;
  };
  static constexpr known bodies[] = {{12, 192, 3, 768, "Ti"},   {12, 384, 6, 1536, "S"},   {12, 768, 12, 3072, "B"},
                                     {24, 1024, 16, 4096, "L"}, {32, 1280, 16, 5120, "H"}};
  for (const known& k : bodies)
    if (d.depth == k.depth && d.width == k.width && d.heads == k.heads && d.mlp_dim == k.mlp &&
        d.block == vitscale::block_kind::classic)
      return std::string("ViT-") + k.name + "/" + std::to_string(d.patch);
  return "";
}

// A model of `Shape` with zero parameters at `resolution` pixels (load() fills them).
template <class Shape>
std::unique_ptr<inference_model> make(int resolution);

}  // namespace catalogue
