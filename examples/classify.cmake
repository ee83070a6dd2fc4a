# classify: images through a checkpoint (examples/classify.cpp). Images are read by
# vitscale/data/image_file.hpp: checked, then decoded by stb_image, from Debian's libstb-dev (headers in
# /usr/include/stb, the implementation in libstb), with zlib for the PNG check; without them the example is
# left out.
find_path(VITSCALE_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb)
find_library(VITSCALE_STB_LIBRARY stb)
find_package(ZLIB)
# The catalogue of compiled shapes classify dispatches to (examples/catalogue/catalogue.cmake; option
# VITSCALE_BUILD_CATALOGUE, ON by default, OFF in scripts/quickstart.sh's sanitized build).
include(${CMAKE_CURRENT_SOURCE_DIR}/catalogue/catalogue.cmake)
if(VITSCALE_STB_INCLUDE_DIR AND VITSCALE_STB_LIBRARY AND ZLIB_FOUND)
  add_executable(classify classify.cpp)
  target_include_directories(classify SYSTEM PRIVATE ${VITSCALE_STB_INCLUDE_DIR})
  target_link_libraries(classify PRIVATE vitscale::vitscale CLI11::CLI11 ${VITSCALE_STB_LIBRARY} ZLIB::ZLIB)
  if(TARGET vitscale_catalogue)
    target_link_libraries(classify PRIVATE vitscale_catalogue)
  endif()
  vitscale_target_defaults(classify)
  if(VITSCALE_BUILD_TESTS)
    set(_images ${CMAKE_CURRENT_SOURCE_DIR}/../tests/golden/images)
    set(_env "OMP_NUM_THREADS=2;OMP_PROC_BIND=false;OMP_WAIT_POLICY=PASSIVE")
    if(TARGET vitscale_catalogue)
      # The catalogue against timm (examples/catalogue/test_catalogue.cpp): files of timm's layout for one model
      # per head kind, written at run time with the formula values of tests/reference/catalogue_reference.py,
      # dispatched to their entry and run, the logits compared with timm's (tests/golden/catalogue/); an
      # unknown shape's message. It leaves the files for the classify runs below.
      find_package(doctest REQUIRED)
      set(_tests ${CMAKE_CURRENT_SOURCE_DIR}/../tests)
      add_executable(test_catalogue ${_tests}/support/main.cpp catalogue/test_catalogue.cpp)
      target_link_libraries(test_catalogue PRIVATE vitscale_catalogue doctest::doctest nlohmann_json::nlohmann_json)
      target_include_directories(test_catalogue PRIVATE ${_tests})
      target_compile_definitions(test_catalogue PRIVATE VITSCALE_TEST_GOLDEN_DIR="${_tests}/golden")
      vitscale_target_defaults(test_catalogue)
      add_test(NAME examples.classify_catalogue COMMAND test_catalogue)
      set_tests_properties(examples.classify_catalogue PROPERTIES FIXTURES_SETUP classify_catalogue ENVIRONMENT "${_env}")
      # classify on a timm-layout MAP file (no metadata) and on a class-token file at 384 px: the entry found,
      # probabilities summing to 1 over 1000 classes.
      add_test(NAME examples.classify_catalogue_map
               COMMAND classify --checkpoint catalogue_ti16_map.safetensors --top-k 2 ${_images}/fmnist_boot.png)
      set_tests_properties(examples.classify_catalogue_map PROPERTIES FIXTURES_REQUIRED classify_catalogue
                           PASS_REGULAR_EXPRESSION "ViT-Ti/16\n  depth 12, width 192, heads \\?, mlp 768, patch 16, 3 channels, 1000 classes, classic block, pool map.*224 px.*all 1000 classes 1\\.0000"
                           ENVIRONMENT "${_env}")
      add_test(NAME examples.classify_catalogue_384
               COMMAND classify --checkpoint catalogue_ti16_cls_384.safetensors --top-k 2 ${_images}/fmnist_pullover_rgb.png)
      set_tests_properties(examples.classify_catalogue_384 PROPERTIES FIXTURES_REQUIRED classify_catalogue
                           PASS_REGULAR_EXPRESSION "ViT-Ti/16\n  depth 12, width 192, .*pool cls.*384 px.*all 1000 classes 1\\.0000"
                           ENVIRONMENT "${_env}")
      # A shape outside the catalogue (Ti/16 with 10 classes): the shape found and every candidate, the
      # example's two and the catalogue's 34.
      add_test(NAME examples.classify_catalogue_unknown
               COMMAND classify --checkpoint catalogue_unknown.safetensors ${_images}/fmnist_boot.png)
      set_tests_properties(examples.classify_catalogue_unknown PROPERTIES FIXTURES_REQUIRED classify_catalogue
                           PASS_REGULAR_EXPRESSION "no compiled shape fits the file's shape\n  depth 12, width 192, heads \\?, mlp 768, patch 16, 3 channels, 10 classes.*\ncandidates \\(36\\):\n  depth 4, width 128, .*\n  depth 24, width 1024, heads 16, mlp 4096, patch 32, 3 channels, 1000 classes, classic block, pool map"
                           ENVIRONMENT "${_env}")
      # Few-shot evaluation of a catalogue model (the timm-layout Ti/16 MAP file at 224 px, and the class-token
      # file run at 64 px with its 384-px position embedding resampled): Fashion-MNIST brought to 3 channels at
      # the model's resolution, ImageNet's normalisation, features of width 192.
      if(TARGET fewshot)
        add_test(NAME examples.fewshot_catalogue
                 COMMAND fewshot --checkpoint catalogue_ti16_map.safetensors --classes 0-4 --shots 1 2 --seeds 2
                                 --test-size 20 --batch 8 --probe 10 --probe-epochs 2)
        set_tests_properties(examples.fewshot_catalogue PROPERTIES FIXTURES_REQUIRED classify_catalogue
                             PASS_REGULAR_EXPRESSION "ViT-Ti/16 at 224 px, 3 channels. inputs: Fashion-MNIST resized \\(bicubic\\), mean 0.485,0.456,0.406, std 0.229,0.224,0.225 \\(ImageNet's \\(timm's default\\)\\).*5 classes \\(0-4\\), 20 test images, features of width 192.* 1-shot \\(l2 1024\\): [0-9.]+% \\+- [0-9.]+ over 2 seeds.* 2-shot.*linear probe on 10 images"
                             ENVIRONMENT "${_env}")
        add_test(NAME examples.fewshot_catalogue_resolution
                 COMMAND fewshot --checkpoint catalogue_ti16_cls_384.safetensors --resolution 64 --mean 0.5 --std 0.5
                                 --classes 3,7 --shots 1 --seeds 1 --test-size 4)
        set_tests_properties(examples.fewshot_catalogue_resolution PROPERTIES FIXTURES_REQUIRED classify_catalogue
                             PASS_REGULAR_EXPRESSION "ViT-Ti/16 at 64 px, 3 channels. inputs: Fashion-MNIST resized \\(bicubic\\), mean 0.5,0.5,0.5, std 0.5,0.5,0.5 \\(option --mean\\).*2 classes \\(3,7\\), 4 test images.* 1-shot \\(l2 1024\\): [0-9.]+% \\+- 0.00 over 1 seeds"
                             ENVIRONMENT "${_env}")
      endif()
      # Fine-tuning a catalogue checkpoint with examples/train (catalogue/finetune.hpp): the 384-px class-token
      # Ti/16 file under a new 10-class head at 32 px (its position embedding resampled), the transfer recipe, 4
      # steps with a training checkpoint at step 2; then a resume from that checkpoint (its shape: 10 classes,
      # 32 px) to the end; an optimizer not compiled for fine-tuning; a body outside the catalogue.
      if(TARGET train AND TARGET vitscale_catalogue_finetune)
        set(_ft --init-from catalogue_ti16_cls_384.safetensors --recipe transfer --resolution 32 --classes 0-1
                --train-size 64 --batch 16 --steps 4 --warmup 1 --precision fp32 --csv finetune_catalogue.csv
                --checkpoint finetune_catalogue.safetensors)
        add_test(NAME examples.train_finetune_catalogue
                 COMMAND train ${_ft} --max-steps 2 --save-every 2 --train-checkpoint finetune_catalogue_state.safetensors --overwrite)
        set_tests_properties(examples.train_finetune_catalogue PROPERTIES FIXTURES_REQUIRED classify_catalogue
                             FIXTURES_SETUP finetune_catalogue
                             PASS_REGULAR_EXPRESSION "recipe transfer: sgd.*loaded 150 tensors from catalogue_ti16_cls_384.safetensors. head re-initialised \\(head.weight \\[10, 192\\], head.bias \\[10\\]: zero\\). unused: head.bias \\[1000\\], head.weight \\[1000, 192\\]. pos_embed resampled 24x24 -> 2x2.*model: ViT depth 12, width 192, 3 heads, MLP 768, patch 16, 32 px, 3 channels, 5[0-9]+ parameters \\(fp32\\). sgd.*final test accuracy [0-9.]+% after 2 steps"
                             ENVIRONMENT "${_env}")
        add_test(NAME examples.train_finetune_catalogue_resume
                 COMMAND train ${_ft} --resume finetune_catalogue_state.safetensors)
        set_tests_properties(examples.train_finetune_catalogue_resume PROPERTIES FIXTURES_REQUIRED finetune_catalogue
                             PASS_REGULAR_EXPRESSION "resumed from finetune_catalogue_state.safetensors at step 2.*32 px, 3 channels.*final test accuracy [0-9.]+% after 4 steps"
                             ENVIRONMENT "${_env}")
        add_test(NAME examples.train_finetune_catalogue_optimizer
                 COMMAND train ${_ft} --optimizer lion)
        set_tests_properties(examples.train_finetune_catalogue_optimizer PROPERTIES FIXTURES_REQUIRED classify_catalogue
                             PASS_REGULAR_EXPRESSION "--optimizer lion: fine-tuning a catalogue checkpoint is compiled with sgd, adamw"
                             ENVIRONMENT "${_env}")
        add_test(NAME examples.train_finetune_unknown
                 COMMAND train --init-from ${_images}/timm_small_vit.safetensors --max-steps 1)
        set_tests_properties(examples.train_finetune_unknown PROPERTIES
                             PASS_REGULAR_EXPRESSION "no compiled shape fits the file's shape\n  depth 2, width 64, heads \\?, mlp 256, patch 16, 3 channels, 10 classes.*\ncandidates \\(32\\):\n  depth 2, width 32, .*\n  depth 6, width 192, .*\n  depth 12, width 192"
                             ENVIRONMENT "${_env}")
      endif()
    endif()
    # Against timm: a small timm ViT with random weights (tests/reference/classify_reference.py wrote the file,
    # no vitscale metadata, so dispatch works from the tensors alone) on the committed images; the top-5
    # probabilities timm computed with its own eval transform are the reference.
    add_test(NAME examples.classify_timm
             COMMAND classify --checkpoint ${_images}/timm_small_vit.safetensors --expect ${_images}/classify_timm_small.json --tolerance 1e-5
                              ${_images}/fmnist_boot.png ${_images}/fmnist_pullover_rgb.png)
    set_tests_properties(examples.classify_timm PROPERTIES PASS_REGULAR_EXPRESSION "2 of 2 images compared.*: agree"
                         ENVIRONMENT "OMP_NUM_THREADS=2;OMP_PROC_BIND=false;OMP_WAIT_POLICY=PASSIVE")
    # Untrusted images (tests/golden/images/untrusted/, written by tests/reference/untrusted_images.py) and bad
    # normalisation values: each refused with its sentence. The refusals from the header run under a 50 MB
    # data limit (RLIMIT_DATA: the heap and private mappings; classify itself needs about 25 MB, while the
    # address space, which ulimit -v caps, is hundreds of MB of libraries and thread stacks): before the
    # checks, stb_image decoded the 19-byte PGM as 800 MB of zeros and ran out of memory at this limit, and
    # its error message did not match.
    set(_bad ${_images}/untrusted)
    set(_seeds ${CMAKE_CURRENT_SOURCE_DIR}/../tests/fuzz/corpus/image)
    set(_ckpt --checkpoint ${_images}/timm_small_vit.safetensors)
    set(_env "OMP_NUM_THREADS=2;OMP_PROC_BIND=false;OMP_WAIT_POLICY=PASSIVE")
    find_program(VITSCALE_SH sh)
    function(vitscale_classify_refuses name regex)
      if(VITSCALE_SH AND NOT VITSCALE_SANITIZE)  # a sanitizer's shadow memory would count against the limit
        add_test(NAME examples.classify_refuses_${name}
                 COMMAND ${VITSCALE_SH} -c "ulimit -d 51200 && exec \"$0\" \"$@\"" $<TARGET_FILE:classify> ${ARGN})
      else()
        add_test(NAME examples.classify_refuses_${name} COMMAND classify ${ARGN})
      endif()
      set_tests_properties(examples.classify_refuses_${name} PROPERTIES PASS_REGULAR_EXPRESSION "${regex}"
                           ENVIRONMENT "${_env}")
    endfunction()
    vitscale_classify_refuses(pgm "pgm_16384.pgm' is a PGM \\(netpbm\\) image \\(P5\\); only PNG and JPEG images are read"
                              ${_ckpt} ${_bad}/pgm_16384.pgm)
    vitscale_classify_refuses(pixel_limit "png_16384.png' is a PNG of 16384 x 16384 = 268435456 pixels, more than the limit of 89478485 pixels"
                              ${_ckpt} ${_bad}/png_16384.png)
    vitscale_classify_refuses(max_pixels "fmnist_boot.png' is a PNG of 112 x 112 = 12544 pixels, more than the limit of 12543 pixels"
                              ${_ckpt} --max-pixels 12543 ${_images}/fmnist_boot.png)
    vitscale_classify_refuses(png_bomb "png_1x1_bomb.png' is a PNG of 1 x 1 pixels whose image data inflates to more than 65538 bytes, where 2 are needed"
                              ${_ckpt} ${_bad}/png_1x1_bomb.png)
    vitscale_classify_refuses(truncated_png "truncated.png' is a truncated PNG: its IDAT chunk at byte [0-9]+ claims [0-9]+ bytes, but [0-9]+ follow"
                              ${_ckpt} ${_bad}/truncated.png)
    vitscale_classify_refuses(truncated_jpeg "truncated.jpg' is a truncated JPEG: it ends in its compressed data at byte 700 without an end-of-image \\(EOI\\) marker"
                              ${_ckpt} ${_bad}/truncated.jpg)
    # A JPEG whose Huffman table defines 302 codes: stb_image 2.27 (Debian 12's libstb) writes past its tables
    # (found by tests/fuzz/fuzz_image, tests/fuzz/regressions/image/): refused before stb_image sees it.
    vitscale_classify_refuses(jpeg_huffman "jpeg_dht_302_codes.jpg' is a corrupt JPEG: a Huffman table \\(DHT\\) at byte 175 defines 302 codes; a table holds at most 256"
                              ${_ckpt} ${_bad}/jpeg_dht_302_codes.jpg)
    vitscale_classify_refuses(std_zero "option --std: std = \"0\" has a value that is not positive"
                              ${_ckpt} --std 0 ${_images}/fmnist_boot.png)
    vitscale_classify_refuses(mean_nan "option --mean: mean = \"0.5,nan,0.5\" is not a finite number or a comma list of them"
                              ${_ckpt} --mean 0.5,nan,0.5 ${_images}/fmnist_boot.png)
    vitscale_classify_refuses(crop_pct "option --crop-pct: crop_pct 0 is not in \\[0.25, 1\\]"
                              ${_ckpt} --crop-pct 0 ${_images}/fmnist_boot.png)
    # What is accepted: JPEG (grey, 4:4:4, 4:2:0), 16-bit, palette, colour-keyed and interlaced PNGs (the fuzz
    # seeds), each classified with probabilities summing to 1.
    set(_formats grey_8x8.jpg rgb_16x16_444.jpg rgb_17x9_420.jpg rgba16.png grey16.png palette8_trns.png
                 rgb8_colour_key.png grey8_colour_key.png rgb8_interlaced.png grey1.png)
    set(_files)
    set(_regex "")
    foreach(_f ${_formats})
      list(APPEND _files ${_seeds}/${_f})
      string(APPEND _regex "${_f} .*all 10 classes 1\\.0000.*")
    endforeach()
    add_test(NAME examples.classify_formats COMMAND classify ${_ckpt} --top-k 1 ${_files})
    set_tests_properties(examples.classify_formats PROPERTIES PASS_REGULAR_EXPRESSION "${_regex}" ENVIRONMENT "${_env}")
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
