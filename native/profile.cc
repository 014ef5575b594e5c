#include "profile.h"

#include <torch/cuda.h>
#include <torch/version.h>

#include <set>

#include <torch/csrc/autograd/profiler_legacy.h>

// Kineto with CUDA activities: written for LibTorch 2.x (not compiled on the 1.13 development
// machine; VILREF_CONSERVATIVE builds keep the legacy profiler).
#if TORCH_VERSION_MAJOR >= 2 && defined(VILREF_WITH_CUDA) && !defined(VILREF_CONSERVATIVE)
#define VILREF_KINETO 1
#include <torch/csrc/autograd/profiler_kineto.h>
#endif

namespace vilref {

struct ProfileScope::Impl {
  std::string file;
  std::unique_ptr<torch::autograd::profiler::RecordProfile> legacy;
  bool kineto = false;
};

const char* ProfileScope::Kind() {
#ifdef VILREF_KINETO
  return torch::cuda::is_available() ? "kineto" : "legacy";
#else
  return "legacy";
#endif
}

ProfileScope::ProfileScope(std::string file) : impl_(std::make_unique<Impl>()) {
  impl_->file = std::move(file);
#ifdef VILREF_KINETO
  if (torch::cuda::is_available()) {
    namespace impl = torch::profiler::impl;
    const impl::ProfilerConfig config(impl::ProfilerState::KINETO, /*report_input_shapes=*/true,
                                      /*profile_memory=*/false);
    const std::set<impl::ActivityType> activities{impl::ActivityType::CPU, impl::ActivityType::CUDA};
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
    impl_->kineto = true;
    return;
  }
#endif
  impl_->legacy = std::make_unique<torch::autograd::profiler::RecordProfile>(impl_->file);
}

ProfileScope::~ProfileScope() {
#ifdef VILREF_KINETO
  if (impl_->kineto) {
    try {
      torch::cuda::synchronize();
      torch::autograd::profiler::disableProfiler()->save(impl_->file);
    } catch (...) {
      // a trace that cannot be written must not turn a finished call into a failure
    }
    return;
  }
#endif
  impl_->legacy.reset();  // writes the trace
}

}  // namespace vilref
