// The catalogue's entries with GAP, GAP + fc_norm and MAP heads (catalogue::gap, gap_fc_norm, map) in catalogue.hpp,
// compiled once here for the vitscale_catalogue library: each instantiates the model's inference (constructor,
// load, predict, features), not its backward. Two translation units, not one per family: the first entry of a
// unit costs ~15 s of compilation past the headers' ~12 s, each further one ~1 s (the kernels are shared),
// so more units would cost more CPU time for little gain on 2 cores (catalogue.hpp's notes).
#include "catalogue.hpp"
#include "inference_model_impl.hpp"

namespace catalogue {

static_assert(gap::size == 7, "shapes_pooled.cpp: one line below per entry of catalogue::gap");
template std::unique_ptr<inference_model> make<detail::at<0, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<1, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<2, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<3, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<4, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<5, gap>>(int);
template std::unique_ptr<inference_model> make<detail::at<6, gap>>(int);

static_assert(gap_fc_norm::size == 7, "shapes_pooled.cpp: one line below per entry of catalogue::gap_fc_norm");
template std::unique_ptr<inference_model> make<detail::at<0, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<1, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<2, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<3, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<4, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<5, gap_fc_norm>>(int);
template std::unique_ptr<inference_model> make<detail::at<6, gap_fc_norm>>(int);

static_assert(map::size == 7, "shapes_pooled.cpp: one line below per entry of catalogue::map");
template std::unique_ptr<inference_model> make<detail::at<0, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<1, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<2, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<3, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<4, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<5, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<6, map>>(int);

}  // namespace catalogue
