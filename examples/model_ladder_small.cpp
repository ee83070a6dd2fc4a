// The training loop for the ladder's two smallest shapes (model_ladder.hpp: xxs and xs), AdamW, fp32 and bf16:
// a unit of its own, so that it builds in parallel with train.cpp and model_ladder_m.cpp.
#include "model_ladder.hpp"

template int model_ladder::train_rung<model_ladder::xxs>(const train_example::run_options&);
template int model_ladder::train_rung<model_ladder::xs>(const train_example::run_options&);
