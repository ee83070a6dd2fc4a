# The catalogue of compiled shapes (examples/catalogue/catalogue.hpp): a static library of two translation units
# (~45 s of one core each), built in parallel and once; a program that links it (classify) compiles none of the
# shapes.
# Included by examples/classify.cmake; another example can include it too (include_guard) and link
# vitscale_catalogue when the target exists.
include_guard(GLOBAL)
option(VITSCALE_BUILD_CATALOGUE
       "Build the catalogue of compiled ViT shapes for timm / big_vision checkpoints (examples/catalogue: 34 shapes, ~90 s of compilation)"
       ON)
if(VITSCALE_BUILD_CATALOGUE)
  add_library(vitscale_catalogue STATIC ${CMAKE_CURRENT_LIST_DIR}/shapes_class_token.cpp
                                        ${CMAKE_CURRENT_LIST_DIR}/shapes_pooled.cpp)
  # Users include "catalogue/catalogue.hpp" (from examples/).
  target_include_directories(vitscale_catalogue PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
  target_link_libraries(vitscale_catalogue PUBLIC vitscale::vitscale)
  target_compile_definitions(vitscale_catalogue INTERFACE VITSCALE_HAVE_CATALOGUE=1)
  vitscale_target_defaults(vitscale_catalogue)
endif()
