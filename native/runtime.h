// Process-wide settings and facts: build stamp, thread count, CUDA devices, the BLAS in use,
// and the boundary's diagnostics.
#pragma once

#include <napi.h>

namespace vilref {

// Applies the configured intra-op thread count to the calling thread (LibTorch's OpenMP
// setting is per thread); every worker calls it before running a task.
void EnsureThreads();

// Adds buildInfo, setNumThreads, getNumThreads, cuda, blas and the `debug` namespace to exports.
void InitRuntime(Napi::Env env, Napi::Object exports);

}  // namespace vilref
