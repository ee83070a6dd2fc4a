# classify: images through a checkpoint (examples/classify.cpp). Images are decoded by stb_image, from
# Debian's libstb-dev (headers in /usr/include/stb, the implementation in libstb); without it the example
# is left out.
find_path(VITSCALE_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb)
find_library(VITSCALE_STB_LIBRARY stb)
if(VITSCALE_STB_INCLUDE_DIR AND VITSCALE_STB_LIBRARY)
  add_executable(classify classify.cpp)
  target_include_directories(classify SYSTEM PRIVATE ${VITSCALE_STB_INCLUDE_DIR})
  target_link_libraries(classify PRIVATE vitscale::vitscale CLI11::CLI11 ${VITSCALE_STB_LIBRARY})
  vitscale_target_defaults(classify)
  if(VITSCALE_BUILD_TESTS)
    set(_images ${CMAKE_CURRENT_SOURCE_DIR}/../tests/golden/images)
    # Against timm: a small timm ViT with random weights (tests/reference/classify_reference.py wrote the file,
    # no vitscale metadata, so dispatch works from the tensors alone) on the committed images; the top-5
    # probabilities timm computed with its own eval transform are the reference.
    add_test(NAME examples.classify_timm
             COMMAND classify --checkpoint ${_images}/timm_small_vit.safetensors --expect ${_images}/classify_timm_small.json --tolerance 1e-5
                              ${_images}/fmnist_boot.png ${_images}/fmnist_pullover_rgb.png)
    set_tests_properties(examples.classify_timm PROPERTIES PASS_REGULAR_EXPRESSION "2 of 2 images compared.*: agree"
                         ENVIRONMENT "OMP_NUM_THREADS=2;OMP_PROC_BIND=false;OMP_WAIT_POLICY=PASSIVE")
    # The Fashion-MNIST model: a 5-step checkpoint from the training example (mean, std and labels in its
    # metadata), then both images (grey, and colour reduced to grey), crop_pct 1 as the model was trained.
    if(TARGET train)
      add_test(NAME examples.classify_fmnist_checkpoint
               COMMAND train --max-steps 5 --warmup 2 --csv classify_smoke_metrics.csv --checkpoint classify_fmnist.safetensors)
      set_tests_properties(examples.classify_fmnist_checkpoint PROPERTIES FIXTURES_SETUP classify_fmnist
                           ENVIRONMENT "OMP_NUM_THREADS=2;OMP_PROC_BIND=false;OMP_WAIT_POLICY=PASSIVE")
      add_test(NAME examples.classify_fmnist
               COMMAND classify --checkpoint classify_fmnist.safetensors --crop-pct 1 --top-k 3
                                ${_images}/fmnist_boot.png ${_images}/fmnist_pullover_rgb.png)
      set_tests_properties(examples.classify_fmnist PROPERTIES FIXTURES_REQUIRED classify_fmnist
                           PASS_REGULAR_EXPRESSION "fmnist_boot.png.*\n  0\\.[0-9]+  (T-shirt/top|Trouser|Pullover|Dress|Coat|Sandal|Shirt|Sneaker|Bag|Ankle boot)\n.*fmnist_pullover_rgb.png.*all 10 classes 1\\.0000"
                           ENVIRONMENT "OMP_NUM_THREADS=2;OMP_PROC_BIND=false;OMP_WAIT_POLICY=PASSIVE")
    endif()
  endif()
else()
  message(STATUS "stb_image not found (Debian: libstb-dev): examples/classify is not built")
endif()
