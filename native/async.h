// Heavy calls run off the event loop and return Promises. Calls on one native object go through
// that object's SerialQueue: they run one at a time, in submission order.
#pragma once

#include <napi.h>

#include <deque>
#include <memory>
#include <string>

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
