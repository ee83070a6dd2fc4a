#pragma once
#define VITSCALE_CONV2D_ONEDNN 0
