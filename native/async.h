// Heavy calls run off the event loop and return Promises. Calls on one native object go through
// that object's SerialQueue: they run one at a time, in submission order.
#pragma once

#include <napi.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "bridge.h"

namespace vilref {

// One unit of asynchronous work. Execute runs on a libuv worker thread and may throw (the
// promise is then rejected with a JS error of the matching class); Resolve runs on the main
// thread afterwards and builds the value the promise resolves to. The task object is created
// and destroyed on the main thread, so it may hold JS references (e.g. JsTensor owners).
class Task {
 public:
  virtual ~Task() = default;
  virtual void Execute() = 0;
  virtual Napi::Value Resolve(Napi::Env env) = 0;
};

// A task made of two lambdas, instead of a Task subclass per call: `execute()` runs on the worker
// and returns a result (or nothing); `resolve(env, result)` (or `resolve(env)` when execute returns
// void) builds the promise's value on the main thread. What the lambdas capture lives as long as
// the task, and is released on the main thread: capture JsTensor inputs by move to keep the JS
// arrays alive until the work has run.
template <typename Exec, typename Res>
class LambdaTask final : public Task {
  using Result = std::invoke_result_t<Exec&>;

 public:
  LambdaTask(Exec execute, Res resolve) : execute_(std::move(execute)), resolve_(std::move(resolve)) {}
  void Execute() override {
    if constexpr (std::is_void_v<Result>)
      execute_();
    else
      result_.emplace(execute_());
  }
  Napi::Value Resolve(Napi::Env env) override {
    if constexpr (std::is_void_v<Result>)
      return resolve_(env);
    else
      return resolve_(env, *result_);
  }

 private:
  Exec execute_;
  Res resolve_;
  std::optional<std::conditional_t<std::is_void_v<Result>, bool, Result>> result_;
};

template <typename Exec, typename Res>
std::unique_ptr<Task> MakeTask(Exec execute, Res resolve) {
  return std::make_unique<LambdaTask<Exec, Res>>(std::move(execute), std::move(resolve));
}

// The common resolvers: a prepared tensor as `{ data, shape }`, named prepared tensors as
// `{ name: { data, shape } }`, nothing (undefined).
template <typename Exec>
std::unique_ptr<Task> MakeTensorTask(Exec execute) {
  return MakeTask(std::move(execute),
                  [](Napi::Env env, const at::Tensor& t) -> Napi::Value { return WrapTensor(env, t); });
}
template <typename Exec>
std::unique_ptr<Task> MakeNamedTask(Exec execute) {
  return MakeTask(std::move(execute),
                  [](Napi::Env env, const std::vector<std::pair<std::string, at::Tensor>>& named) -> Napi::Value {
                    return WrapNamed(env, named);
                  });
}
template <typename Exec>
std::unique_ptr<Task> MakeVoidTask(Exec execute) {
  return MakeTask(std::move(execute), [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

class TaskWorker;

class SerialQueue {
 public:
  // Queues `task` behind earlier ones and returns its promise. `owner` (the JS object this queue
  // belongs to) is kept alive until the task has settled.
  Napi::Promise Submit(Napi::Env env, Napi::Object owner, std::unique_ptr<Task> task);
  size_t Pending() const { return waiting_.size() + (running_ ? 1 : 0); }

 private:
  friend class TaskWorker;
  void Finished();
  std::deque<TaskWorker*> waiting_;
  bool running_ = false;
};

// dispose() for every object that owns tensors (model, trainer, segmenter, finetuner, head, process
// group), so that memory does not wait for the garbage collector. A Disposal holds the flag and the
// public class name: Check() first in every method makes a call after dispose() fail with
// "<Class> was disposed", and Dispose() queues the release behind the calls already made on `queue`
// (they finish first), then hands the freed CPU blocks back to the system (allocator.h; on CUDA the
// tensors go back to LibTorch's caching allocator). Main thread only, except `release`.
class Disposal {
 public:
  explicit Disposal(std::string name) : name_(std::move(name)) {}
  bool disposed() const { return disposed_; }
  const std::string& name() const { return name_; }
  // Throws Error("<name> was disposed; ...") once Dispose() has been called.
  void Check() const;
  // Marks the object disposed and returns a promise that resolves once `release` has run on a
  // worker thread, after every task queued before it. A second call resolves at once.
  Napi::Promise Dispose(Napi::Env env, Napi::Object owner, SerialQueue& queue, std::function<void()> release);

 private:
  std::string name_;
  bool disposed_ = false;
};

// Runs a task with no ordering constraint (free functions).
Napi::Promise RunAsync(Napi::Env env, std::unique_ptr<Task> task);

// A promise already rejected with the error `body` throws, or whatever `body` returns. Methods
// that return promises use it so that bad arguments reject rather than throw.
template <typename Body>
Napi::Value PromiseGuard(Napi::Env env, Body&& body) {
  try {
    return body();
  } catch (...) {
    auto [kind, message] = DescribeException(std::current_exception());
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(MakeJsError(env, kind, message).Value());
    return deferred.Promise();
  }
}

}  // namespace vilref
