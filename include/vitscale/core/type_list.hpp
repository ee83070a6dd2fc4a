#pragma once
// A compile-time list of types (presets, execution spaces), and its concatenation.

#include <cstddef>

namespace vitscale {

template <class... Ts>
struct type_list {
  static constexpr std::size_t size = sizeof...(Ts);
};

namespace detail {
template <class... Lists>
struct concat;
template <class... As>
struct concat<type_list<As...>> {
  using type = type_list<As...>;
};
template <class... As, class... Bs, class... Rest>
struct concat<type_list<As...>, type_list<Bs...>, Rest...> {
  using type = typename concat<type_list<As..., Bs...>, Rest...>::type;
};
}  // namespace detail

template <class... Lists>
using concat_t = typename detail::concat<Lists...>::type;

}  // namespace vitscale
