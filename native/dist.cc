#include "dist.h"

#include <ATen/ATen.h>
#include <torch/version.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "bridge.h"

#if defined(USE_C10D_GLOO)
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

namespace vilref {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string Message(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const c10::Error& err) {
    return err.what_without_backtrace();
  } catch (const std::exception& err) {
    return err.what();
  } catch (...) {
    return "unknown error";
  }
}

std::string SecondsText(std::chrono::milliseconds ms) {
  std::ostringstream s;
  s << ms.count() / 1000.0 << " s";
  return s.str();
}

}  // namespace

#if defined(USE_C10D_GLOO)

constexpr auto kHeartbeat = std::chrono::milliseconds(500);

struct Communicator::Impl {
  DistOptions options;
  c10::intrusive_ptr<c10d::Store> store;
  // LibTorch 2 split the process group into a front and per-device Backends (Gloo and NCCL are
  // Backends there, with the same collectives); 1.x has ProcessGroupGloo derive from ProcessGroup.
#if TORCH_VERSION_MAJOR >= 2
  c10::intrusive_ptr<c10d::Backend> pg;
#else
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
#endif
  std::atomic<int64_t> step{0};
  double gatherSeconds = 0, reduceSeconds = 0;
  std::thread heartbeat;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;

  // The steps of Communicator::Create; `who` and `where` start and fill in their error messages.
  void OpenStore(const std::string& who, const std::string& where);
  void Rendezvous(const std::string& who, const std::string& where);
  void CreateProcessGroup(const std::string& who);

  static c10::intrusive_ptr<c10d::TCPStore> Client(const DistOptions& o, std::chrono::milliseconds timeout) {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(o.masterPort);
    so.isServer = false;
    so.waitWorkers = false;
    so.timeout = timeout;
    return c10::make_intrusive<c10d::TCPStore>(o.masterAddr, so);
  }

  // Each rank bumps vilref/hb/<rank> every kHeartbeat on its own store connection; a rank whose
  // counter stands still is dead or frozen. Ends quietly when the store goes away.
  void StartHeartbeat() {
    heartbeat = std::thread([this] {
      try {
        auto client = Client(options, std::min(options.timeout, std::chrono::milliseconds(10000)));
        const std::string key = "vilref/hb/" + std::to_string(options.rank);
        std::unique_lock<std::mutex> lock(mutex);
        while (!stopping) {
          lock.unlock();
          client->add(key, 1);
          lock.lock();
          wake.wait_for(lock, kHeartbeat, [this] { return stopping; });
        }
      } catch (...) {
      }
    });
  }

  // Who is to blame for a failed collective: a peer whose heartbeat stopped, a peer behind in
  // steps, or rank 0 when its store cannot be reached.
  std::string Diagnose() {
    const int world = options.worldSize, me = options.rank;
    try {
      auto probe = Client(options, std::min(options.timeout, std::chrono::milliseconds(5000)));
      auto read = [&](const std::string& prefix) {
        std::vector<int64_t> v(world);
        for (int r = 0; r < world; ++r) v[r] = probe->add(prefix + std::to_string(r), 0);
        return v;
      };
      auto before = read("vilref/hb/");
      std::this_thread::sleep_for(3 * kHeartbeat);
      auto after = read("vilref/hb/");
      std::vector<int> stale;
      for (int r = 0; r < world; ++r)
        if (r != me && before[r] == after[r]) stale.push_back(r);
      std::ostringstream m;
      if (!stale.empty()) {
        for (size_t i = 0; i < stale.size(); ++i) m << (i ? ", " : "") << "rank " << stale[i];
        m << (stale.size() > 1 ? " stopped" : " stopped") << " responding (no heartbeat for "
          << std::chrono::duration<double>(3 * kHeartbeat).count() << " s: it exited, crashed or is frozen)";
        return m.str();
      }
      auto steps = read("vilref/step/");
      std::vector<int> behind;
      for (int r = 0; r < world; ++r)
        if (steps[r] < steps[me]) behind.push_back(r);
      if (!behind.empty()) {
        for (size_t i = 0; i < behind.size(); ++i)
          m << (i ? ", " : "") << "rank " << behind[i] << " (at step " << steps[behind[i]] << ")";
        m << " did not reach step " << steps[me] << " within the timeout of " << SecondsText(options.timeout)
          << ": it hangs or is slower than the timeout";
        return m.str();
      }
      return "every rank is alive and at the same step; no rank to blame";
    } catch (...) {
      if (me != 0)
        return "rank 0, which serves the rendezvous store at " + options.masterAddr + ":" +
               std::to_string(options.masterPort) + ", cannot be reached: it exited, crashed or is frozen";
      return "the rendezvous store cannot be read (" + Message(std::current_exception()) + ")";
    }
  }

  [[noreturn]] void Fail(const std::string& what, const std::string& cause) {
    std::ostringstream m;
    m << "dist: rank " << options.rank << " of " << options.worldSize << ": " << what << " at step " << step.load()
      << " failed: " << Diagnose() << " [" << options.backend << ": " << cause << "]";
    throw std::runtime_error(m.str());
  }

  void Wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
    try {
      // the backend's own timeout fires first; this bound is the last resort
      if (!work->wait(options.timeout + std::chrono::milliseconds(5000))) Fail(what, "timed out");
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()).rfind("dist: ", 0) == 0) throw;
      Fail(what, Message(std::current_exception()));
    } catch (...) {
      Fail(what, Message(std::current_exception()));
    }
  }
};

namespace {

bool IsLoopback(const std::string& addr) { return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1"; }

}  // namespace

namespace {

// WORLD_SIZE, RANK, MASTER_PORT and the backend, before anything connects.
void CheckOptions(const DistOptions& o) {
  if (o.worldSize < 1) ThrowRangeError("WORLD_SIZE must be at least 1");
  if (o.rank < 0 || o.rank >= o.worldSize)
    ThrowRangeError("RANK=" + std::to_string(o.rank) + " must be below WORLD_SIZE=" + std::to_string(o.worldSize));
  if (o.masterPort < 1 || o.masterPort > 65535)
    ThrowRangeError("MASTER_PORT=" + std::to_string(o.masterPort) + " is not a TCP port");
#if !defined(USE_C10D_NCCL)
  if (o.backend == "nccl")
    throw std::runtime_error(
        "dist: backend \"nccl\" is not in this build (its LibTorch has no c10d NCCL); use \"gloo\"");
#endif
  if (o.backend != "gloo" && o.backend != "nccl")
    ThrowRangeError("backend: expected \"gloo\" or \"nccl\", got \"" + o.backend + "\"");
}

}  // namespace

// 1. the store: rank 0 serves it
void Communicator::Impl::OpenStore(const std::string& who, const std::string& where) {
  const DistOptions& o = options;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(o.masterPort);
    so.isServer = o.rank == 0;
    so.waitWorkers = false;
    so.timeout = o.timeout;
    store = c10::make_intrusive<c10d::TCPStore>(o.masterAddr, so);
  } catch (...) {
    if (o.rank == 0)
      throw std::runtime_error(who + "cannot serve the rendezvous store on MASTER_ADDR:MASTER_PORT=" + where + " (" +
                               Message(std::current_exception()) + ")");
    throw std::runtime_error(who + "cannot reach the rendezvous store at MASTER_ADDR:MASTER_PORT=" + where +
                             " within " + SecondsText(o.timeout) + ": is rank 0 running? (" +
                             Message(std::current_exception()) + ")");
  }
}

// 2. every rank agrees on WORLD_SIZE and holds a distinct RANK
void Communicator::Impl::Rendezvous(const std::string& who, const std::string& where) {
  const DistOptions& o = options;
  c10d::Store& store = *this->store;
  auto bytes = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  auto seen = store.compareSet("vilref/world", {}, bytes(std::to_string(o.worldSize)));
  std::string first(seen.begin(), seen.end());
  if (first != std::to_string(o.worldSize))
    throw std::runtime_error(who + "WORLD_SIZE=" + std::to_string(o.worldSize) +
                             " here, but another rank joined with WORLD_SIZE=" + first);
  if (store.add("vilref/join/" + std::to_string(o.rank), 1) > 1)
    throw std::runtime_error(who + "RANK=" + std::to_string(o.rank) + " is claimed by more than one process");
  store.add("vilref/step/" + std::to_string(o.rank), 0);
  std::vector<std::string> keys;
  for (int r = 0; r < o.worldSize; ++r) keys.push_back("vilref/join/" + std::to_string(r));
  try {
    store.wait(keys, o.timeout);
  } catch (...) {
    std::string missing;
    try {
      for (int r = 0; r < o.worldSize; ++r)
        if (!store.check({keys[r]})) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
    } catch (...) {
      missing = "0 (the store host)";
    }
    throw std::runtime_error(who + "rank" + (missing.find(',') != std::string::npos ? "s " : " ") + missing +
                             " did not join within " + SecondsText(o.timeout) + " (WORLD_SIZE=" +
                             std::to_string(o.worldSize) + ", MASTER_ADDR:MASTER_PORT=" + where + ")");
  }
}

// 3. the process group
void Communicator::Impl::CreateProcessGroup(const std::string& who) {
  const DistOptions& o = options;
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("vilref/pg", store);
  try {
    if (o.backend == "gloo") {
      auto go = c10d::ProcessGroupGloo::Options::create(o.timeout);
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"))
        go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (IsLoopback(o.masterAddr))
        go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      go->threads = 2;
      pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, o.rank, o.worldSize, go);
    } else {
#if defined(USE_C10D_NCCL)
      // Untested here (no CUDA LibTorch on the development machine). Blocking wait makes
      // work->wait() honour the timeout instead of hanging in a dead communicator.
      setenv("NCCL_BLOCKING_WAIT", "1", 0);
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = o.timeout;
      pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, o.rank, o.worldSize, no);
#endif
    }
  } catch (...) {
    throw std::runtime_error(who + "creating the " + o.backend +
                             " process group failed: " + Message(std::current_exception()));
  }
}

std::shared_ptr<Communicator> Communicator::Create(const DistOptions& o) {
  CheckOptions(o);
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  const std::string where = o.masterAddr + ":" + std::to_string(o.masterPort);
  const std::string who = "dist: rank " + std::to_string(o.rank) + " of " + std::to_string(o.worldSize) + ": ";
  impl->OpenStore(who, where);
  impl->Rendezvous(who, where);
  impl->CreateProcessGroup(who);
  impl->StartHeartbeat();
  return std::shared_ptr<Communicator>(new Communicator(std::move(impl)));
}

Communicator::Communicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Communicator::~Communicator() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->heartbeat.joinable()) impl_->heartbeat.join();
}

int Communicator::rank() const { return impl_->options.rank; }
int Communicator::size() const { return impl_->options.worldSize; }
const std::string& Communicator::backend() const { return impl_->options.backend; }
std::chrono::milliseconds Communicator::timeout() const { return impl_->options.timeout; }

void Communicator::MarkStep(int64_t step) {
  impl_->step = step;
  try {
    impl_->store->add("vilref/step/" + std::to_string(impl_->options.rank), 1);
  } catch (...) {
    impl_->Fail("marking the step in the store", Message(std::current_exception()));
  }
}

Gathered Communicator::AllGatherRows(const at::Tensor& local, const std::string& what) {
  auto t0 = Clock::now();
  const int world = size();
  at::Tensor in = local.contiguous();
  // row counts first: a rank that skipped a bad image has fewer rows
  std::vector<at::Tensor> countIn{at::full({1}, in.size(0), in.options().dtype(at::kLong))};
  std::vector<std::vector<at::Tensor>> countOut(1);
  for (int r = 0; r < world; ++r) countOut[0].push_back(at::empty_like(countIn[0]));
  impl_->Wait(impl_->pg->allgather(countOut, countIn), what + " (row counts)");
  Gathered g;
  g.offsets.push_back(0);
  int64_t most = 0;
  for (int r = 0; r < world; ++r) {
    const int64_t n = countOut[0][r].item<int64_t>();
    g.offsets.push_back(g.offsets.back() + n);
    most = std::max(most, n);
  }
  std::vector<int64_t> shape(in.sizes().begin(), in.sizes().end());
  shape[0] = most;
  at::Tensor padded = in.size(0) == most ? in : at::zeros(shape, in.options());
  if (in.size(0) != most) padded.slice(0, 0, in.size(0)).copy_(in);
  std::vector<at::Tensor> dataIn{padded};
  std::vector<std::vector<at::Tensor>> dataOut(1);
  for (int r = 0; r < world; ++r) dataOut[0].push_back(at::empty(shape, in.options()));
  impl_->Wait(impl_->pg->allgather(dataOut, dataIn), what);
  std::vector<at::Tensor> parts;
  for (int r = 0; r < world; ++r) parts.push_back(dataOut[0][r].slice(0, 0, g.offsets[r + 1] - g.offsets[r]));
  g.rows = at::cat(parts, 0);
  impl_->gatherSeconds += Seconds(t0, Clock::now());
  return g;
}

namespace {

// Runs `op` on one flat buffer per dtype holding all `tensors`, then copies the results back.
template <typename Op>
void Flat(const std::vector<at::Tensor>& tensors, Op&& op) {
  std::vector<at::ScalarType> dtypes;
  for (auto& t : tensors)
    if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end()) dtypes.push_back(t.scalar_type());
  for (auto dtype : dtypes) {
    std::vector<at::Tensor> group, flat;
    for (auto& t : tensors)
      if (t.scalar_type() == dtype) {
        group.push_back(t);
        flat.push_back(t.detach().reshape({-1}));
      }
    at::Tensor buffer = at::cat(flat, 0);
    op(buffer);
    int64_t at = 0;
    for (auto& t : group) {
      const int64_t n = t.numel();
      t.detach().copy_(buffer.slice(0, at, at + n).view(t.sizes()));
      at += n;
    }
  }
}

}  // namespace

void Communicator::AllReduceSum(const std::vector<at::Tensor>& tensors, const std::string& what) {
  auto t0 = Clock::now();
  Flat(tensors, [&](at::Tensor& buffer) {
    std::vector<at::Tensor> io{buffer};
    impl_->Wait(impl_->pg->allreduce(io), what);
  });
  impl_->reduceSeconds += Seconds(t0, Clock::now());
}

void Communicator::Broadcast(const std::vector<at::Tensor>& tensors, int root, const std::string& what) {
  auto t0 = Clock::now();
  Flat(tensors, [&](at::Tensor& buffer) {
    std::vector<at::Tensor> io{buffer};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    impl_->Wait(impl_->pg->broadcast(io, bo), what);
  });
  impl_->reduceSeconds += Seconds(t0, Clock::now());
}

void Communicator::Barrier(const std::string& what) { impl_->Wait(impl_->pg->barrier(), what); }

std::pair<double, double> Communicator::TakeSeconds() {
  std::pair<double, double> out{impl_->gatherSeconds, impl_->reduceSeconds};
  impl_->gatherSeconds = impl_->reduceSeconds = 0;
  return out;
}

bool DistAvailable(std::string* why) { return true; }

#else  // no c10d Gloo in this build

struct Communicator::Impl {};

namespace {
const char* kUnavailable =
    "dist: this vilref addon was built without c10d Gloo (libgloo-dev was not installed when it was built); on Debian: "
    "apt-get install -y libgloo-dev, then "
    "npm run build:native";
}

std::shared_ptr<Communicator> Communicator::Create(const DistOptions&) { throw std::runtime_error(kUnavailable); }
Communicator::Communicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Communicator::~Communicator() = default;
int Communicator::rank() const { return 0; }
int Communicator::size() const { return 1; }
const std::string& Communicator::backend() const {
  static const std::string none = "none";
  return none;
}
std::chrono::milliseconds Communicator::timeout() const { return std::chrono::milliseconds(0); }
void Communicator::MarkStep(int64_t) {}
Gathered Communicator::AllGatherRows(const at::Tensor&, const std::string&) { throw std::runtime_error(kUnavailable); }
void Communicator::AllReduceSum(const std::vector<at::Tensor>&, const std::string&) {
  throw std::runtime_error(kUnavailable);
}
void Communicator::Broadcast(const std::vector<at::Tensor>&, int, const std::string&) {
  throw std::runtime_error(kUnavailable);
}
void Communicator::Barrier(const std::string&) { throw std::runtime_error(kUnavailable); }
std::pair<double, double> Communicator::TakeSeconds() { return {0, 0}; }
bool DistAvailable(std::string* why) {
  if (why) *why = kUnavailable;
  return false;
}

#endif

// ---- JS: dist.init, ProcessGroup -------------------------------------------------------------

namespace {

Napi::FunctionReference* g_pgConstructor = nullptr;

class InitTask : public Task {
 public:
  explicit InitTask(DistOptions options) : options_(std::move(options)) {}
  void Execute() override { comm_ = Communicator::Create(options_); }
  Napi::Value Resolve(Napi::Env env) override {
    auto* holder = new std::shared_ptr<Communicator>(comm_);
    auto external = Napi::External<std::shared_ptr<Communicator>>::New(
        env, holder, [](Napi::Env, std::shared_ptr<Communicator>* p) { delete p; });
    return g_pgConstructor->New({external});
  }

 private:
  DistOptions options_;
  std::shared_ptr<Communicator> comm_;
};

class CollectiveTask : public Task {
 public:
  enum class Kind { AllReduce, AllGather, Barrier };
  CollectiveTask(std::shared_ptr<Communicator> comm, Kind kind, JsTensor input)
      : comm_(std::move(comm)), kind_(kind), input_(std::move(input)) {}
  void Execute() override {
    if (kind_ == Kind::Barrier) {
      comm_->Barrier("barrier");
      return;
    }
    at::Tensor t = input_.tensor.clone();
    if (kind_ == Kind::AllReduce) {
      comm_->AllReduceSum({t}, "all_reduce");
      out_ = PrepareForJs(t);
    } else {
      out_ = PrepareForJs(comm_->AllGatherRows(t, "all_gather").rows);
    }
  }
  Napi::Value Resolve(Napi::Env env) override {
    return kind_ == Kind::Barrier ? env.Undefined() : Napi::Value(WrapTensor(env, out_));
  }

 private:
  std::shared_ptr<Communicator> comm_;
  Kind kind_;
  JsTensor input_;
  at::Tensor out_;
};

// dist.init({ rank, worldSize, masterAddr, masterPort, timeoutMs, backend }) → Promise<ProcessGroup>; complete
// (lib/train/dist.ts fills in the defaults and checks the values)
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    std::string why;
    if (!DistAvailable(&why)) throw std::runtime_error(why);
    if (!info[0].IsObject())
      ThrowTypeError("options: expected { rank, worldSize, masterAddr, masterPort, timeoutMs, backend }");
    auto o = info[0].As<Napi::Object>();
    DistOptions d;
    d.worldSize = static_cast<int>(ReadInt(o, "options", "worldSize", 1, 1 << 20));
    d.rank = static_cast<int>(ReadInt(o, "options", "rank", 0, d.worldSize - 1));
    d.masterAddr = ReadString(o, "options", "masterAddr");
    d.masterPort = static_cast<int>(ReadInt(o, "options", "masterPort", 1, 65535));
    d.timeout =
        std::chrono::milliseconds(static_cast<int64_t>(ReadNumber(o, "options", "timeoutMs", 100, 7 * 24 * 3600e3)));
    d.backend = ReadEnumName(o, "options", "backend", {"gloo", "nccl"});
    return RunAsync(env, std::make_unique<InitTask>(d));
  });
}

}  // namespace

Napi::Function ProcessGroup::Define(Napi::Env env) {
  Napi::Function constructor =
      DefineClass(env, "ProcessGroup",
                  {
                      InstanceMethod<&ProcessGroup::AllReduce>("allReduce"),
                      InstanceMethod<&ProcessGroup::AllGather>("allGather"),
                      InstanceMethod<&ProcessGroup::Barrier>("barrier"),
                      InstanceAccessor<&ProcessGroup::GetRank>("rank"),
                      InstanceAccessor<&ProcessGroup::GetWorldSize>("worldSize"),
                      InstanceAccessor<&ProcessGroup::GetBackend>("backend"),
                      InstanceAccessor<&ProcessGroup::GetTimeout>("timeoutMs"),
                      InstanceMethod<&ProcessGroup::Dispose>("dispose"),
                      InstanceMethod<&ProcessGroup::Dispose>(Napi::Symbol::WellKnown(env, "dispose")),
                      InstanceMethod<&ProcessGroup::Dispose>(Napi::Symbol::WellKnown(env, "asyncDispose")),
                  });
  g_pgConstructor = new Napi::FunctionReference(Napi::Persistent(constructor));
  return constructor;
}

ProcessGroup::ProcessGroup(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProcessGroup>(info) {
  Guard(info.Env(), [&] {
    if (info.Length() != 1 || !info[0].IsExternal())
      ThrowTypeError("ProcessGroup: made by dist.init(options), not directly");
    comm_ = *info[0].As<Napi::External<std::shared_ptr<Communicator>>>().Data();
    rank_ = comm_->rank();
    size_ = comm_->size();
    backend_ = comm_->backend();
    timeoutMs_ = static_cast<double>(comm_->timeout().count());
    return 0;
  });
}

ProcessGroup* ProcessGroup::From(const Napi::Value& value, const std::string& name) {
  if (!g_pgConstructor || !value.IsObject() || !value.As<Napi::Object>().InstanceOf(g_pgConstructor->Value()))
    ThrowTypeError(name + ": expected a ProcessGroup from dist.init()");
  ProcessGroup* group = ProcessGroup::Unwrap(value.As<Napi::Object>());
  group->disposal_.Check();
  return group;
}

Napi::Value ProcessGroup::AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    auto t = ReadTensor(info[0], TensorSpec{"tensor", {at::kFloat, at::kDouble, at::kLong, at::kInt}, {}, true, false});
    return queue_.Submit(env, Value(),
                         std::make_unique<CollectiveTask>(comm_, CollectiveTask::Kind::AllReduce, std::move(t)));
  });
}

Napi::Value ProcessGroup::AllGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    auto t = ReadTensor(info[0], TensorSpec{"tensor", {at::kFloat, at::kDouble, at::kLong, at::kInt}, {}, true, false});
    if (t.tensor.dim() < 1) ThrowRangeError("tensor: allGather concatenates rows; give at least one dimension");
    return queue_.Submit(env, Value(),
                         std::make_unique<CollectiveTask>(comm_, CollectiveTask::Kind::AllGather, std::move(t)));
  });
}

Napi::Value ProcessGroup::Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    return queue_.Submit(env, Value(),
                         std::make_unique<CollectiveTask>(comm_, CollectiveTask::Kind::Barrier, JsTensor{}));
  });
}

Napi::Value ProcessGroup::GetRank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), rank_); }
Napi::Value ProcessGroup::GetWorldSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), size_); }
Napi::Value ProcessGroup::GetBackend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), backend_); }
Napi::Value ProcessGroup::GetTimeout(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), timeoutMs_);
}

// dispose(): this object's hold on the group ends after the collectives already queued; the store
// connection and the backend close once no trainer holds the group either.
Napi::Value ProcessGroup::Dispose(const Napi::CallbackInfo& info) {
  std::shared_ptr<Communicator> comm = std::move(comm_);  // queued collectives hold their own reference
  return disposal_.Dispose(info.Env(), Value(), queue_, [comm]() mutable { comm.reset(); });
}

void InitDist(Napi::Env env, Napi::Object exports) {
  Napi::Object dist = Napi::Object::New(env);
  std::string why;
  const bool available = DistAvailable(&why);
  dist.Set("available", Napi::Boolean::New(env, available));
  dist.Set("reason", available ? env.Null() : Napi::Value(Napi::String::New(env, why)));
  Napi::Array backends = Napi::Array::New(env);
  uint32_t n = 0;
#if defined(USE_C10D_GLOO)
  backends.Set(n++, Napi::String::New(env, "gloo"));
#if defined(USE_C10D_NCCL)
  backends.Set(n++, Napi::String::New(env, "nccl"));
#endif
#endif
  (void)n;
  dist.Set("backends", backends);
  dist.Set("init", Napi::Function::New(env, Init, "init"));
  dist.Set("ProcessGroup", ProcessGroup::Define(env));
  exports.Set("dist", dist);
}

}  // namespace vilref
