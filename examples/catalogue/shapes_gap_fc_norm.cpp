// The catalogue's entries with GAP then timm's fc_norm, 1000 classes (catalogue::gap_fc_norm in catalogue.hpp), compiled once here for
// the vitscale_catalogue library: each instantiates the model's inference (constructor, load, predict,
// features), not its backward.
#include "catalogue.hpp"
#include "inference_model_impl.hpp"

namespace catalogue {

static_assert(gap_fc_norm::size == 7, "shapes_gap_fc_norm.cpp: one line below per entry of catalogue::gap_fc_norm");
template std::unique_ptr<inference_model> make<detail::at<0, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<1, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<2, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<3, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<4, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<5, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<6, gap_fc_norm>>(int);

}  // namespace catalogue
