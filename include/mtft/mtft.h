/* mtft: multitask finetuning of transformer models. Umbrella header. */
#ifndef MTFT_MTFT_H
#define MTFT_MTFT_H

#include "mtft/common.h"
#include "mtft/version.h"
#include "mtft/rng.h"
#include "mtft/tensor.h"

#endif
