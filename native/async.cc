#include "async.h"

#include "allocator.h"
#include "runtime.h"

namespace vilref {

class TaskWorker : public Napi::AsyncWorker {
 public:
  TaskWorker(Napi::Env env, std::unique_ptr<Task> task, SerialQueue* queue)
      : Napi::AsyncWorker(env, "vilref:task"),
        task_(std::move(task)),
        queue_(queue),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }
  void KeepAlive(Napi::Object owner) { owner_ = Napi::Persistent(owner); }

  void Execute() override {
    try {
      EnsureThreads();
      task_->Execute();
    } catch (...) {
      auto described = DescribeException(std::current_exception());
      kind_ = described.first;
      SetError(described.second);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    try {
      deferred_.Resolve(task_->Resolve(env));
    } catch (...) {
      auto [kind, message] = DescribeException(std::current_exception());
      deferred_.Reject(MakeJsError(env, kind, message).Value());
    }
    Settle();
  }

  void OnError(const Napi::Error& error) override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    deferred_.Reject(MakeJsError(env, kind_, error.Message()).Value());
    Settle();
  }

 private:
  void Settle() {
    task_.reset();  // releases JS references on the main thread
    if (queue_) queue_->Finished();
  }

  std::unique_ptr<Task> task_;
  SerialQueue* queue_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference owner_;
  ErrorKind kind_ = ErrorKind::Error;
};

Napi::Promise SerialQueue::Submit(Napi::Env env, Napi::Object owner, std::unique_ptr<Task> task) {
  auto* worker = new TaskWorker(env, std::move(task), this);
  worker->KeepAlive(owner);
  Napi::Promise promise = worker->Promise();
  if (running_) {
    waiting_.push_back(worker);
  } else {
    running_ = true;
    worker->Queue();
  }
  return promise;
}

void SerialQueue::Finished() {
  running_ = false;
  if (waiting_.empty()) return;
  TaskWorker* next = waiting_.front();
  waiting_.pop_front();
  running_ = true;
  next->Queue();
}

namespace {

class ReleaseTask : public Task {
 public:
  explicit ReleaseTask(std::function<void()> release) : release_(std::move(release)) {}
  void Execute() override {
    ReleaseToSystem(release_);
    release_ = nullptr;
  }
  Napi::Value Resolve(Napi::Env env) override { return env.Undefined(); }

 private:
  std::function<void()> release_;
};

}  // namespace

void Disposal::Check() const {
  if (disposed_)
    throw BoundaryError(ErrorKind::Error, name_ + " was disposed; its memory is released and it takes no more calls");
}

Napi::Promise Disposal::Dispose(Napi::Env env, Napi::Object owner, SerialQueue& queue, std::function<void()> release) {
  if (disposed_) {
    auto done = Napi::Promise::Deferred::New(env);
    done.Resolve(env.Undefined());
    return done.Promise();
  }
  disposed_ = true;
  return queue.Submit(env, owner, std::make_unique<ReleaseTask>(std::move(release)));
}

Napi::Promise RunAsync(Napi::Env env, std::unique_ptr<Task> task) {
  auto* worker = new TaskWorker(env, std::move(task), nullptr);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace vilref
