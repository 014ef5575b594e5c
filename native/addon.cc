// Registers vilref's native classes and functions; nothing else lives here.
#include <napi.h>

#include "allocator.h"
#include "checkpoint.h"
#include "clip.h"
#include "dist.h"
#include "fewshot.h"
#include "finetune.h"
#include "head.h"
#include "jpeg.h"
#include "logistic.h"
#include "lora.h"
#include "rank.h"
#include "runtime.h"
#include "segment.h"
#include "trainer.h"
#include "wscl.h"

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  vilref::InitAllocator(env, exports);
  vilref::InitRuntime(env, exports);
  vilref::InitCheckpoint(env, exports);
  vilref::InitLosses(env, exports);
  vilref::InitDist(env, exports);
  vilref::InitJpeg(env, exports);
  vilref::InitRank(env, exports);
  vilref::InitLogistic(env, exports);
  vilref::InitFewShot(env, exports);
  exports.Set("Head", vilref::Head::Define(env));
  exports.Set("ViLReF", vilref::ViLReF::Define(env));
  exports.Set("Trainer", vilref::Trainer::Define(env));
  exports.Set("Segmenter", vilref::Segmenter::Define(env));
  exports.Set("Finetuner", vilref::Finetuner::Define(env));
  exports.Set("Lora", vilref::Lora::Define(env));
  return exports;
}

NODE_API_MODULE(vilref, Init)
