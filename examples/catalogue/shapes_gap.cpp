// The catalogue's entries with GAP, 1000 classes (catalogue::gap in catalogue.hpp), compiled once here for
// the vitscale_catalogue library: each instantiates the model's inference (constructor, load, predict,
// features), not its backward.
#include "catalogue.hpp"
#include "inference_model_impl.hpp"

namespace catalogue {

static_assert(gap::size == 7, "shapes_gap.cpp: one line below per entry of catalogue::gap");
template std::unique_ptr<inference_model> make<detail::at<0, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<1, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<2, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<3, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<4, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<5, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<6, gap>>(int);

}  // namespace catalogue
