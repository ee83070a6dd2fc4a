# The model against timm (golden files from tests/reference/vit_reference.py) and by finite differences.
vitscale_add_test_executable(model ${CMAKE_CURRENT_SOURCE_DIR}/model/vit_timm.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/model/vit_timm_variants.cpp ${CMAKE_CURRENT_SOURCE_DIR}/model/vit_gradients.cpp)
target_link_libraries(test_model PRIVATE nlohmann_json::nlohmann_json)
target_compile_definitions(test_model PRIVATE VITSCALE_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/data")
