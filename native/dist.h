// Process groups on LibTorch's c10d (Gloo on CPU, NCCL on CUDA where the LibTorch has it), with the
// torchrun rendezvous: a TCPStore at MASTER_ADDR:MASTER_PORT served by rank 0. Every collective
// waits at most the group's timeout; a failure becomes an error that names the rank to blame,
// found from per-rank heartbeats and step counters kept in the store.
//
// The trainer uses Communicator directly (no c10d header leaks out of dist.cc); JS sees
// `dist.available`, `dist.init(options) → Promise<ProcessGroup>` and the ProcessGroup class.
// Without c10d Gloo at build time (no libgloo-dev), everything here reports it is unavailable.
#pragma once

#include <napi.h>

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "async.h"

namespace vilref {

// dist.init's options, complete (lib/train/dist.ts's schema owns the defaults).
struct DistOptions {
  int rank = 0, worldSize = 0;
  std::string masterAddr;
  int masterPort = 0;
  std::chrono::milliseconds timeout{0};
  std::string backend;  // "gloo" | "nccl"
};

// Rows gathered from every rank, in rank order, and where each rank's rows start.
struct Gathered {
  at::Tensor rows;
  std::vector<int64_t> offsets;  // worldSize + 1 entries
};

class Communicator {
 public:
  // Blocking: rendezvous through the store, then the process group. Throws naming what is wrong
  // (a rank that did not join, a port in use, a store that cannot be reached).
  static std::shared_ptr<Communicator> Create(const DistOptions& options);
  ~Communicator();

  int rank() const;
  int size() const;
  const std::string& backend() const;
  std::chrono::milliseconds timeout() const;

  // Every rank's `local` rows ([n_r, ...], n_r may differ between ranks; the other dims may not),
  // concatenated in rank order. No gradient.
  Gathered AllGatherRows(const at::Tensor& local, const std::string& what);
  // Sums the tensors over ranks, in place (one flat buffer per dtype).
  void AllReduceSum(const std::vector<at::Tensor>& tensors, const std::string& what);
  // Copies rank `root`'s tensors to every rank, in place.
  void Broadcast(const std::vector<at::Tensor>& tensors, int root, const std::string& what);
  void Barrier(const std::string& what);
  // Records that this rank starts step `step` (read back when a collective fails).
  void MarkStep(int64_t step);

  // Seconds spent in all-gathers and all-reduces/broadcasts since the last call (then reset).
  std::pair<double, double> TakeSeconds();

  struct Impl;

 private:
  explicit Communicator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True when this build has a c10d backend; otherwise `why` says what is missing.
bool DistAvailable(std::string* why);

class ProcessGroup : public Napi::ObjectWrap<ProcessGroup> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ProcessGroup(const Napi::CallbackInfo& info);
  // The ProcessGroup behind a JS value, or a TypeError naming `name`.
  static ProcessGroup* From(const Napi::Value& value, const std::string& name);
  const std::shared_ptr<Communicator>& communicator() const { return comm_; }

 private:
  Napi::Value AllReduce(const Napi::CallbackInfo& info);
  Napi::Value AllGather(const Napi::CallbackInfo& info);
  Napi::Value Barrier(const Napi::CallbackInfo& info);
  Napi::Value GetRank(const Napi::CallbackInfo& info);
  Napi::Value GetWorldSize(const Napi::CallbackInfo& info);
  Napi::Value GetBackend(const Napi::CallbackInfo& info);
  Napi::Value GetTimeout(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<Communicator> comm_;
  int rank_ = 0, size_ = 1;
  std::string backend_;
  double timeoutMs_ = 0;
  SerialQueue queue_;
  Disposal disposal_{"ProcessGroup"};
};

// exports.dist = { available, reason, backends, init(options), ProcessGroup }
void InitDist(Napi::Env env, Napi::Object exports);

}  // namespace vilref
