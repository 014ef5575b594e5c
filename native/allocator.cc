#include "allocator.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/alignment.h>
#include <c10/util/Exception.h>

#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace vilref {

namespace {

constexpr size_t kMinCached = size_t{1} << 20;  // 1 MiB
constexpr size_t kRound = size_t{1} << 20;

// Blocks are identified by their address (LibTorch's raw_allocate/raw_deallocate, used by oneDNN,
// need the context to be the data pointer): the sizes of live cached-size blocks are recorded.
class CachingCpuAllocator final : public c10::Allocator {
 public:
  explicit CachingCpuAllocator(size_t limit) : limit_(limit) {}

  c10::DataPtr allocate(size_t n) const override {
    void* ptr = Take(n);
    return {ptr, ptr, &CachingCpuAllocator::Release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &CachingCpuAllocator::Release; }

  static void Release(void* ptr) { Instance()->Return(ptr); }

  void Empty() const { Trim(0); }

  // Frees cached blocks, largest first, until at most `keep` bytes stay cached.
  void Trim(uint64_t keep) const {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (cached_ > keep && !free_.empty()) {
        auto last = std::prev(free_.end());
        cached_ -= last->first;
        drop.push_back(last->second);
        free_.erase(last);
      }
    }
    for (void* ptr : drop) std::free(ptr);
  }

  CpuCacheStats Stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return {cached_, live_, hits_, misses_, limit_, true};
  }

  static CachingCpuAllocator*& Instance() {
    static CachingCpuAllocator* instance = nullptr;
    return instance;
  }

 private:
  static void* Aligned(size_t size) {
    void* ptr = nullptr;
    return posix_memalign(&ptr, c10::gAlignment, size == 0 ? c10::gAlignment : size) == 0 ? ptr : nullptr;
  }

  void* Take(size_t n) const {
    if (n < kMinCached) {
      void* ptr = Aligned(n);
      TORCH_CHECK(ptr, "out of CPU memory: tried to allocate ", n, " bytes");
      return ptr;
    }
    const size_t size = (n + kRound - 1) / kRound * kRound;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end()) {
        void* ptr = it->second;
        free_.erase(it);
        cached_ -= size;
        ++hits_;
        live_ += size;
        sizes_[ptr] = size;
        return ptr;
      }
      ++misses_;
    }
    void* ptr = Aligned(size);
    if (!ptr) {
      Empty();  // give cached memory back and try once more
      ptr = Aligned(size);
      TORCH_CHECK(ptr, "out of CPU memory: tried to allocate ", size, " bytes");
    }
    std::lock_guard<std::mutex> lock(mutex_);
    live_ += size;
    sizes_[ptr] = size;
    return ptr;
  }

  void Return(void* ptr) const {
    if (!ptr) return;
    std::unique_lock<std::mutex> lock(mutex_);
    auto it = sizes_.find(ptr);
    if (it == sizes_.end()) {  // a small block
      lock.unlock();
      std::free(ptr);
      return;
    }
    const size_t size = it->second;
    sizes_.erase(it);
    live_ -= size;
    if (cached_ + size <= limit_) {
      free_.emplace(size, ptr);
      cached_ += size;
      return;
    }
    lock.unlock();
    std::free(ptr);
  }

  size_t limit_;
  mutable std::mutex mutex_;
  mutable std::multimap<size_t, void*> free_;
  mutable std::unordered_map<void*, size_t> sizes_;
  mutable uint64_t cached_ = 0, live_ = 0, hits_ = 0, misses_ = 0;
};

size_t DefaultLimit() {
  const char* env = std::getenv("VILREF_CPU_CACHE_MB");
  if (env && *env) {
    char* end = nullptr;
    unsigned long long mb = std::strtoull(env, &end, 10);
    if (end && *end == '\0') return static_cast<size_t>(mb) << 20;
  }
  long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGESIZE);
  return pages > 0 && pageSize > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(pageSize) / 4 : size_t{1} << 30;
}

}  // namespace

bool InstallCachingCpuAllocator() {
  static bool installed = [] {
    size_t limit = DefaultLimit();
    if (limit == 0) return false;
    auto* allocator = new CachingCpuAllocator(limit);  // lives as long as the process: tensors may outlive everything
    CachingCpuAllocator::Instance() = allocator;
    c10::SetCPUAllocator(allocator, /*priority=*/10);
    return true;
  }();
  return installed;
}

CpuCacheStats CpuCache() {
  auto* a = CachingCpuAllocator::Instance();
  return a ? a->Stats() : CpuCacheStats{0, 0, 0, 0, 0, false};
}

void EmptyCpuCache() {
  if (auto* a = CachingCpuAllocator::Instance()) a->Empty();
}

void ReleaseToSystem(const std::function<void()>& release) {
  auto* a = CachingCpuAllocator::Instance();
  const uint64_t before = a ? a->Stats().cachedBytes : 0;
  release();
  if (a) a->Trim(before);
  malloc_trim(0);
}

void InitAllocator(Napi::Env env, Napi::Object exports) {
  InstallCachingCpuAllocator();
  exports.Set("cpuCache", Napi::Function::New(
                              env,
                              [](const Napi::CallbackInfo& info) -> Napi::Value {
                                Napi::Env e = info.Env();
                                CpuCacheStats s = CpuCache();
                                Napi::Object o = Napi::Object::New(e);
                                o.Set("enabled", s.enabled);
                                o.Set("cachedBytes", Napi::Number::New(e, static_cast<double>(s.cachedBytes)));
                                o.Set("liveBytes", Napi::Number::New(e, static_cast<double>(s.liveBytes)));
                                o.Set("limitBytes", Napi::Number::New(e, static_cast<double>(s.limitBytes)));
                                o.Set("hits", Napi::Number::New(e, static_cast<double>(s.hits)));
                                o.Set("misses", Napi::Number::New(e, static_cast<double>(s.misses)));
                                return o;
                              },
                              "cpuCache"));
  exports.Set("emptyCpuCache", Napi::Function::New(
                                   env,
                                   [](const Napi::CallbackInfo& info) -> Napi::Value {
                                     EmptyCpuCache();
                                     return info.Env().Undefined();
                                   },
                                   "emptyCpuCache"));
}

}  // namespace vilref
