// A caching CPU allocator for LibTorch: freed blocks of 1 MiB and more are kept by size and reused,
// so the activations of repeated forward passes do not go back to the kernel and fault in again
// (on this machine's kind fresh pages cost a ViT-B/16 forward about 30%). Smaller blocks go to
// LibTorch's default allocator. The cache is bounded (VILREF_CPU_CACHE_MB, default a quarter of
// physical memory; 0 turns the allocator off) and can be emptied.
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>

namespace vilref {

struct CpuCacheStats {
  uint64_t cachedBytes, liveBytes, hits, misses, limitBytes;
  bool enabled;
};

// Installs the allocator (once per process); returns whether it is active.
bool InstallCachingCpuAllocator();
CpuCacheStats CpuCache();
void EmptyCpuCache();
// Runs `release` (which drops tensors) and gives what it freed back to the system: the block cache
// keeps no more than it held before, and glibc returns its free pages (malloc_trim). dispose() uses it.
void ReleaseToSystem(const std::function<void()>& release);

// cpuCache() → stats, emptyCpuCache()
void InitAllocator(Napi::Env env, Napi::Object exports);

}  // namespace vilref
