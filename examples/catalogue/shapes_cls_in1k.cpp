// The catalogue's entries with a class token, 1000 classes (catalogue::cls_in1k in catalogue.hpp), compiled once here for
// the vitscale_catalogue library: each instantiates the model's inference (constructor, load, predict,
// features), not its backward.
#include "catalogue.hpp"
#include "inference_model_impl.hpp"

namespace catalogue {

static_assert(cls_in1k::size == 7, "shapes_cls_in1k.cpp: one line below per entry of catalogue::cls_in1k");
template std::unique_ptr<inference_model> make<detail::at<0, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<1, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<2, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<3, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<4, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<5, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<6, cls_in1k>>(int);

}  // namespace catalogue
