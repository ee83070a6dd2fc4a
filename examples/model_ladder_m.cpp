// The training loop for the ladder's largest shape (model_ladder.hpp: m), AdamW, fp32 and bf16: a unit of its
// own, so that it builds in parallel with train.cpp and model_ladder_small.cpp.
#include "model_ladder.hpp"

template int model_ladder::train_rung<model_ladder::m>(const train_example::run_options&);
