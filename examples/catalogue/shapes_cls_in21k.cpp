// The catalogue's entries with a class token, 21843 classes (ImageNet-21k) (catalogue::cls_in21k in catalogue.hpp), compiled once here for
// the vitscale_catalogue library: each instantiates the model's inference (constructor, load, predict,
// features), not its backward.
#include "catalogue.hpp"
#include "inference_model_impl.hpp"

namespace catalogue {

static_assert(cls_in21k::size == 6, "shapes_cls_in21k.cpp: one line below per entry of catalogue::cls_in21k");
template std::unique_ptr<inference_model> make<detail::at<0, cls_in21k>>(int);
template std::unique_ptr<inference_model> make<detail::at<1, cls_in21k>>(int);
template std::unique_ptr<inference_model> make<detail::at<2, cls_in21k>>(int);
template std::unique_ptr<inference_model> make<detail::at<3, cls_in21k>>(int);
template std::unique_ptr<inference_model> make<detail::at<4, cls_in21k>>(int);
template std::unique_ptr<inference_model> make<detail::at<5, cls_in21k>>(int);

}  // namespace catalogue
