// The catalogue's entries with MAP, 1000 classes (catalogue::map in catalogue.hpp), compiled once here for
// the vitscale_catalogue library: each instantiates the model's inference (constructor, load, predict,
// features), not its backward.
#include "catalogue.hpp"
#include "inference_model_impl.hpp"

namespace catalogue {

static_assert(map::size == 7, "shapes_map.cpp: one line below per entry of catalogue::map");
template std::unique_ptr<inference_model> make<detail::at<0, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<1, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<2, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<3, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<4, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<5, map>>(int);
template std::unique_ptr<inference_model> make<detail::at<6, map>>(int);

}  // namespace catalogue
