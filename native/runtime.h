// Process-wide settings and facts: build stamp, thread count, CUDA devices, the BLAS in use,
// and the boundary's diagnostics.
#pragma once

#include <napi.h>

#include <mutex>

namespace vilref {

// Applies the configured intra-op thread count to the calling thread (LibTorch's OpenMP
// setting is per thread); every worker calls it before running a task.
void EnsureThreads();

// The process's CPU generator serves every thread. A seeded construction (manual_seed, then the
// modules' initial draws) and a change of the generator's state (a trainer's importState, on a
// libuv thread) must not interleave, or the seeded weights depend on timing: each holds this lock.
std::recursive_mutex& GlobalRngMutex();

// Adds buildInfo, setNumThreads, getNumThreads, cuda, blas and the `debug` namespace to exports.
void InitRuntime(Napi::Env env, Napi::Object exports);

}  // namespace vilref
