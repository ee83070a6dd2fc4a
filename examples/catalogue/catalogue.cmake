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
# Fine-tuning the catalogue's bodies with examples/train (catalogue/finetune.hpp): the whole training loop per
# entry (28: seven bodies x four head kinds, 10 classes), two units of ~3 to 4 minutes of one core each, built
# in parallel and once.
option(VITSCALE_BUILD_CATALOGUE_FINETUNE
       "Build the fine-tuning of the catalogue's bodies for examples/train (--init-from a timm / big_vision file; ~7 min of compilation)"
       ON)
if(VITSCALE_BUILD_CATALOGUE AND VITSCALE_BUILD_CATALOGUE_FINETUNE AND TARGET CLI11::CLI11 AND TARGET ZLIB::ZLIB)
  add_library(vitscale_catalogue_finetune STATIC ${CMAKE_CURRENT_LIST_DIR}/finetune_cls_map.cpp
                                                 ${CMAKE_CURRENT_LIST_DIR}/finetune_gap.cpp)
  target_include_directories(vitscale_catalogue_finetune PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
  target_link_libraries(vitscale_catalogue_finetune PUBLIC vitscale::vitscale CLI11::CLI11 ZLIB::ZLIB)
  target_compile_definitions(vitscale_catalogue_finetune INTERFACE VITSCALE_HAVE_CATALOGUE_FINETUNE=1)
  vitscale_target_defaults(vitscale_catalogue_finetune)
endif()
