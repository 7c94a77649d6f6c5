/* mtft: multitask finetuning of transformer models. Umbrella header: every
 * public module header. */
#ifndef MTFT_MTFT_H
#define MTFT_MTFT_H

#include "mtft/common.h"
#include "mtft/version.h"
#include "mtft/rng.h"
#include "mtft/tensor.h"
#include "mtft/io.h"
#include "mtft/tokenizer.h"
#include "mtft/model.h"
#include "mtft/optim.h"
#include "mtft/sampler.h"
#include "mtft/balance.h"
#include "mtft/head.h"
#include "mtft/peft.h"
#include "mtft/task.h"
#include "mtft/data.h"
#include "mtft/config.h"
#include "mtft/metrics.h"
#include "mtft/trainer.h"
#include "mtft/report.h"
#include "mtft/merge.h"

#endif
