// The catalogue's entries with a class token (catalogue::cls_in1k, cls_in21k) in catalogue.hpp,
// compiled once here for the vitscale_catalogue library: each instantiates the model's inference (constructor,
// load, predict, features), not its backward. Two translation units, not one per family: the first entry of a
// unit costs ~15 s of compilation past the headers' ~12 s, each further one ~1 s (the kernels are shared),
// so more units would cost more CPU time for little gain on 2 cores (catalogue.hpp's notes).
#include "catalogue.hpp"
#include "inference_model_impl.hpp"

namespace catalogue {

static_assert(cls_in1k::size == 7, "shapes_class_token.cpp: one line below per entry of catalogue::cls_in1k");
template std::unique_ptr<inference_model> make<detail::at<0, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<1, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<2, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<3, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<4, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<5, cls_in1k>>(int);
template std::unique_ptr<inference_model> make<detail::at<6, cls_in1k>>(int);

static_assert(cls_in21k::size == 6, "shapes_class_token.cpp: one line below per entry of catalogue::cls_in21k");
template std::unique_ptr<inference_model> make<detail::at<0, cls_in21k>>(int);
template std::unique_ptr<inference_model> make<detail::at<1, cls_in21k>>(int);
template std::unique_ptr<inference_model> make<detail::at<2, cls_in21k>>(int);
template std::unique_ptr<inference_model> make<detail::at<3, cls_in21k>>(int);
template std::unique_ptr<inference_model> make<detail::at<4, cls_in21k>>(int);
template std::unique_ptr<inference_model> make<detail::at<5, cls_in21k>>(int);

}  // namespace catalogue
