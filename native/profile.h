// VILREF_PROFILE=DIR: a chrome trace of a call (its LibTorch ops; with a CUDA LibTorch ≥ 2 also the
// CUDA kernels, through the Kineto profiler), written when the scope ends. What the GPU run's
// profile stage records (bench/gpu/vit-embed.ts --profile) to find where a forward's time goes.
#pragma once

#include <memory>
#include <string>

namespace vilref {

class ProfileScope {
 public:
  // Records until destruction into `file` (a .json chrome trace); the profiler is per thread, so
  // construct it on the thread that runs the work.
  explicit ProfileScope(std::string file);
  ~ProfileScope();
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

  // "kineto" (CPU ops and CUDA kernels) or "legacy" (CPU-side op times only).
  static const char* Kind();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vilref
