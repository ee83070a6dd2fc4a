# The model's host-side parts: parameter initialisation (timm, big_vision) and position embeddings
# (big_vision's sin-cos table, timm's resampling against golden values from PyTorch).
vitscale_add_test_executable(model_parts ${CMAKE_CURRENT_SOURCE_DIR}/model/init.cpp
                             ${CMAKE_CURRENT_SOURCE_DIR}/model/posemb.cpp)
target_link_libraries(test_model_parts PRIVATE nlohmann_json::nlohmann_json)
target_compile_definitions(test_model_parts PRIVATE VITSCALE_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/data")
