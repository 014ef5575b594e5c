#include "runtime.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#ifdef VILREF_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#ifndef VILREF_CONSERVATIVE
#include <c10/cuda/CUDACachingAllocator.h>
#endif
#endif

#include "async.h"
#include "bridge.h"

#ifndef VILREF_SOURCE_HASH
#define VILREF_SOURCE_HASH "unknown"
#endif
#ifndef VILREF_FLAVOUR
#define VILREF_FLAVOUR "unknown"
#endif

namespace vilref {

namespace {

std::atomic<int> g_threads{0};

int DefaultThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void SetThreads(int n) {
  g_threads.store(n);
  EnsureThreads();
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("sourceHash", VILREF_SOURCE_HASH);
  out.Set("flavour", VILREF_FLAVOUR);
  out.Set("torchHeaderVersion", TORCH_VERSION);
  out.Set("napiVersion", NAPI_VERSION);
  out.Set("cxx11Abi", _GLIBCXX_USE_CXX11_ABI);
#ifdef VILREF_WITH_CUDA
  out.Set("cudaCompiled", true);
#else
  out.Set("cudaCompiled", false);
#endif
  out.Set("parallel", at::get_parallel_info());
  out.Set("config", at::show_config());
  return out;
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&] {
    SetThreads(static_cast<int>(ReadInteger(info[0], "threads", 1, 4096)));
    return info.Env().Undefined();
  });
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), g_threads.load()); }

Napi::Value Cuda(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
    bool available = torch::cuda::is_available();
    int64_t count = available ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
    out.Set("available", available);
    out.Set("deviceCount", Napi::Number::New(env, static_cast<double>(count)));
    Napi::Array devices = Napi::Array::New(env);
#ifdef VILREF_WITH_CUDA
    for (int64_t i = 0; i < count; ++i) {
      const auto* p = at::cuda::getDeviceProperties(static_cast<int>(i));
      Napi::Object d = Napi::Object::New(env);
      d.Set("index", Napi::Number::New(env, static_cast<double>(i)));
      d.Set("name", p->name);
      d.Set("totalMemory", Napi::Number::New(env, static_cast<double>(p->totalGlobalMem)));
      d.Set("capability", std::to_string(p->major) + "." + std::to_string(p->minor));
      d.Set("multiprocessors", p->multiProcessorCount);
      devices.Set(static_cast<uint32_t>(i), d);
    }
#endif
    out.Set("devices", devices);
    return out;
  });
}

// The CUDA device a "cuda" / "cuda:N" string names (-1: "cpu"), checked against the devices present.
int CudaIndex(const Napi::Value& value) {
  if (!value.IsString()) ThrowTypeError("device: expected a string such as \"cuda\", \"cuda:0\" or \"cpu\"");
  std::string name = value.As<Napi::String>().Utf8Value();
  at::Device device(at::kCPU);
  try {
    device = at::Device(name);
  } catch (const c10::Error&) {
    ThrowRangeError("device: \"" + name + "\" is not a device");
  }
  if (device.is_cpu()) return -1;
  if (!device.is_cuda()) ThrowRangeError("device: only \"cpu\" and \"cuda\" devices are supported");
  const auto count = static_cast<int>(torch::cuda::device_count());
  const int index = device.has_index() ? device.index() : 0;
  if (index >= count)
    ThrowRangeError("device: \"" + name + "\" does not exist (" + std::to_string(count) + " CUDA devices)");
  return index;
}

// cudaMemory(device) → { allocated, reserved, peakAllocated, peakReserved } in bytes: the CUDA caching
// allocator's counters for the device (what tensors hold, what the allocator holds from the driver,
// and their peaks since the process started or resetCudaPeakMemory). All 0 for "cpu" or without CUDA.
Napi::Value CudaMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    [[maybe_unused]] const int index = CudaIndex(info[0]);
    double allocated = 0, reserved = 0, peakAllocated = 0, peakReserved = 0;
#if defined(VILREF_WITH_CUDA) && !defined(VILREF_CONSERVATIVE)
    if (index >= 0) {
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
      allocated = static_cast<double>(stats.allocated_bytes[0].current);  // [0]: the aggregate over pools
      peakAllocated = static_cast<double>(stats.allocated_bytes[0].peak);
      reserved = static_cast<double>(stats.reserved_bytes[0].current);
      peakReserved = static_cast<double>(stats.reserved_bytes[0].peak);
    }
#endif
    Napi::Object out = Napi::Object::New(env);
    out.Set("allocated", allocated);
    out.Set("reserved", reserved);
    out.Set("peakAllocated", peakAllocated);
    out.Set("peakReserved", peakReserved);
    return out;
  });
}

// resetCudaPeakMemory(device): the peaks start again from the current values.
Napi::Value ResetCudaPeakMemory(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    [[maybe_unused]] const int index = CudaIndex(info[0]);
#if defined(VILREF_WITH_CUDA) && !defined(VILREF_CONSERVATIVE)
    if (index >= 0) c10::cuda::CUDACachingAllocator::resetPeakStats(index);
#endif
    return info.Env().Undefined();
  });
}

// emptyCudaCache(): returns the caching allocator's unused blocks to the driver.
Napi::Value EmptyCudaCache(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
#if defined(VILREF_WITH_CUDA) && !defined(VILREF_CONSERVATIVE)
    if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
    return info.Env().Undefined();
  });
}

int CollectLibrary(struct dl_phdr_info* info, size_t, void* data) {
  if (info->dlpi_name && info->dlpi_name[0]) static_cast<std::vector<std::string>*>(data)->push_back(info->dlpi_name);
  return 0;
}

// The shared libraries mapped into this process, in load order.
std::vector<std::string> LoadedLibraries() {
  std::vector<std::string> out;
  dl_iterate_phdr(CollectLibrary, &out);
  return out;
}

Napi::Value Blas(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array libs = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& path : LoadedLibraries()) {
    std::string base = path.substr(path.find_last_of('/') + 1);
    std::string lower = base;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    bool blas = lower.find("blas") != std::string::npos || lower.find("mkl") != std::string::npos ||
                lower.find("lapack") != std::string::npos || lower.find("blis") != std::string::npos;
    if (!blas) continue;
    char* real = realpath(path.c_str(), nullptr);
    Napi::Object lib = Napi::Object::New(env);
    lib.Set("path", path);
    lib.Set("realPath", real ? std::string(real) : path);
    free(real);
    libs.Set(i++, lib);
    // OpenBLAS reports its build and threading model; ask the loaded copy, not a new one.
    if (void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
      using ConfigFn = char* (*)();
      using IntFn = int (*)();
      if (auto config = reinterpret_cast<ConfigFn>(dlsym(handle, "openblas_get_config")))
        out.Set("openblasConfig", std::string(config()));
      if (auto parallel = reinterpret_cast<IntFn>(dlsym(handle, "openblas_get_parallel"))) {
        int p = parallel();
        out.Set("openblasParallel", p == 0 ? "sequential" : p == 1 ? "pthread" : p == 2 ? "openmp" : "unknown");
      }
      if (auto threads = reinterpret_cast<IntFn>(dlsym(handle, "openblas_get_num_threads")))
        out.Set("openblasThreads", threads());
      dlclose(handle);
    }
  }
  out.Set("libraries", libs);
  return out;
}

// ---- diagnostics of the boundary itself (used by tests and `vilref doctor --self-test`) ----

class EchoTask : public Task {
 public:
  EchoTask(JsTensor input, bool transpose, std::string cast)
      : input_(std::move(input)), transpose_(transpose), cast_(std::move(cast)) {}
  void Execute() override {
    inputAddress_ = reinterpret_cast<uint64_t>(input_.tensor.data_ptr());
    at::Tensor t = input_.tensor.clone();
    if (transpose_) t = t.t();
    if (cast_ == "bfloat16") t = t.to(at::kBFloat16);
    if (cast_ == "float16") t = t.to(at::kHalf);
    output_ = PrepareForJs(t);
    outputAddress_ = reinterpret_cast<uint64_t>(output_.data_ptr());
  }
  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("output", WrapTensor(env, output_));
    out.Set("inputAddress", Napi::BigInt::New(env, inputAddress_));
    out.Set("outputAddress", Napi::BigInt::New(env, outputAddress_));
    return out;
  }

 private:
  JsTensor input_;
  bool transpose_;
  std::string cast_;
  at::Tensor output_;
  uint64_t inputAddress_ = 0, outputAddress_ = 0;
};

// echo(tensor, { transpose?, cast?: "bfloat16" | "float16", finite? }): a copy of the input through
// LibTorch and back, with the addresses LibTorch saw, so tests can check both directions.
Napi::Value Echo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    bool transpose = false, finite = false;
    std::string cast;
    if (info.Length() > 1 && info[1].IsObject()) {
      auto opts = info[1].As<Napi::Object>();
      transpose = opts.Get("transpose").ToBoolean();
      finite = opts.Get("finite").ToBoolean();
      if (opts.Get("cast").IsString()) cast = opts.Get("cast").As<Napi::String>().Utf8Value();
      if (!cast.empty() && cast != "bfloat16" && cast != "float16")
        ThrowRangeError("options.cast: expected \"bfloat16\" or \"float16\", got \"" + cast + "\"");
    }
    TensorSpec spec{
        "tensor", {at::kFloat, at::kDouble, at::kInt, at::kLong, at::kByte, at::kChar, at::kShort}, {}, true, finite};
    JsTensor input = ReadTensor(info[0], spec);
    if (transpose && input.tensor.dim() != 2)
      ThrowRangeError("options.transpose: needs a 2-D tensor, got " + std::to_string(input.tensor.dim()) + "-D");
    if (!cast.empty() && input.tensor.scalar_type() != at::kFloat)
      ThrowTypeError("options.cast: needs Float32Array data");
    return RunAsync(env, std::make_unique<EchoTask>(std::move(input), transpose, cast));
  });
}

Napi::Value AddressOf(const Napi::CallbackInfo& info) {
  return Guard(info.Env(),
               [&]() -> Napi::Value { return Napi::BigInt::New(info.Env(), DataAddress(info[0], "array")); });
}

class TorchErrorTask : public Task {
 public:
  TorchErrorTask(std::string message, bool internal) : message_(std::move(message)), internal_(internal) {}
  void Execute() override {
    if (internal_) TORCH_INTERNAL_ASSERT(false, message_);
    TORCH_CHECK(false, message_);
  }
  Napi::Value Resolve(Napi::Env env) override { return env.Undefined(); }

 private:
  std::string message_;
  bool internal_;
};

// torchError(message, async, internal): raises a real c10::Error inside LibTorch's checking machinery,
// synchronously or on a worker thread, to prove it reaches JS as an Error without a backtrace;
// `internal`: a failed TORCH_INTERNAL_ASSERT, whose "report a bug to PyTorch" vilref rewrites.
Napi::Value TorchError(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string message = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "test error";
  bool internal = info.Length() > 2 && info[2].ToBoolean();
  if (info.Length() > 1 && info[1].ToBoolean())
    return RunAsync(env, std::make_unique<TorchErrorTask>(message, internal));
  if (internal)
    return Guard(env, [&]() -> Napi::Value {
      TORCH_INTERNAL_ASSERT(false, message);
      return env.Undefined();
    });
  return Guard(env, [&]() -> Napi::Value {
    TORCH_CHECK(false, message);
    return env.Undefined();
  });
}

}  // namespace

std::recursive_mutex& GlobalRngMutex() {
  static std::recursive_mutex m;
  return m;
}

void EnsureThreads() {
  thread_local int applied = -1;
  int want = g_threads.load();
  if (want > 0 && applied != want) {
    at::set_num_threads(want);
    applied = want;
  }
}

void InitRuntime(Napi::Env env, Napi::Object exports) {
  if (g_threads.load() == 0) SetThreads(DefaultThreads());
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("cuda", Napi::Function::New(env, Cuda, "cuda"));
  exports.Set("blas", Napi::Function::New(env, Blas, "blas"));
  exports.Set("cudaMemory", Napi::Function::New(env, CudaMemory, "cudaMemory"));
  exports.Set("resetCudaPeakMemory", Napi::Function::New(env, ResetCudaPeakMemory, "resetCudaPeakMemory"));
  exports.Set("emptyCudaCache", Napi::Function::New(env, EmptyCudaCache, "emptyCudaCache"));
  Napi::Object debug = Napi::Object::New(env);
  debug.Set("echo", Napi::Function::New(env, Echo, "echo"));
  debug.Set("addressOf", Napi::Function::New(env, AddressOf, "addressOf"));
  debug.Set("torchError", Napi::Function::New(env, TorchError, "torchError"));
  exports.Set("debug", debug);
}

}  // namespace vilref
