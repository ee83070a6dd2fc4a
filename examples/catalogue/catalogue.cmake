# The catalogue of compiled shapes (examples/catalogue/catalogue.hpp): a static library, one translation unit per
# family of entries, built in parallel and once; a program that links it (classify) compiles none of the shapes.
# Included by examples/classify.cmake; another example can include it too (include_guard) and link
# vitscale_catalogue when the target exists.
include_guard(GLOBAL)
option(VITSCALE_BUILD_CATALOGUE
       "Build the catalogue of compiled ViT shapes for timm / big_vision checkpoints (examples/catalogue; ~34 shapes, minutes to compile)"
       ON)
if(VITSCALE_BUILD_CATALOGUE)
  add_library(vitscale_catalogue STATIC
              ${CMAKE_CURRENT_LIST_DIR}/shapes_cls_in1k.cpp ${CMAKE_CURRENT_LIST_DIR}/shapes_cls_in21k.cpp
              ${CMAKE_CURRENT_LIST_DIR}/shapes_gap.cpp ${CMAKE_CURRENT_LIST_DIR}/shapes_gap_fc_norm.cpp
              ${CMAKE_CURRENT_LIST_DIR}/shapes_map.cpp)
  # Users include "catalogue/catalogue.hpp" (from examples/).
  target_include_directories(vitscale_catalogue PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
  target_link_libraries(vitscale_catalogue PUBLIC vitscale::vitscale)
  target_compile_definitions(vitscale_catalogue INTERFACE VITSCALE_HAVE_CATALOGUE=1)
  vitscale_target_defaults(vitscale_catalogue)
endif()
