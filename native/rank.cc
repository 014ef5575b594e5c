#include "rank.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "async.h"
#include "bridge.h"

namespace vilref {

namespace {

// Rows of index [m, d] that one query block of `rows` queries is scored against at once.
struct Blocks {
  int64_t queryRows, indexRows;
};

// Whole index rows for many queries when they fit the budget; else 256 queries at a time and as
// many index rows as the budget leaves.
Blocks TopKBlocks(int64_t n, int64_t m, int64_t block) {
  const int64_t wide = block / std::max<int64_t>(m, 1);
  const int64_t q = std::max<int64_t>(1, std::min(n, std::max<int64_t>(256, wide)));
  return {q, std::max<int64_t>(1, std::min(m, block / q))};
}

// Counts, per row of S [rows, m], the entries ≥ the row's target score (the target included).
template <typename T>
void CountAtLeast(const at::Tensor& S, const at::Tensor& targets, at::Tensor& out) {
  const int64_t rows = S.size(0), m = S.size(1), t = targets.size(1);
  const T* s = S.data_ptr<T>();
  const int64_t* tg = targets.data_ptr<int64_t>();
  int64_t* o = out.data_ptr<int64_t>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* row = s + r * m;
      for (int64_t j = 0; j < t; ++j) {
        const T target = row[tg[r * t + j]];
        int64_t count = 0;
        for (int64_t c = 0; c < m; ++c) count += row[c] >= target;
        o[r * t + j] = count - 1;  // the target itself is not a competitor
      }
    }
  });
}

// Orders candidates (scores, global indices) [q, c] best first, equal scores by ascending index,
// and keeps the first `keep` columns.
std::pair<at::Tensor, at::Tensor> OrderAndKeep(const at::Tensor& scores, const at::Tensor& indices, int64_t keep) {
  auto [byIndex, perm] = indices.sort(1);
  at::Tensor s = scores.gather(1, perm);
  auto [ordered, perm2] = s.sort(true, 1, true);  // stable, descending: ties keep ascending index
  at::Tensor idx = byIndex.gather(1, perm2);
  return {ordered.narrow(1, 0, keep), idx.narrow(1, 0, keep)};
}

// Where equal scores straddle the k-th place, topk may keep any of them: such rows keep every
// entry above the k-th score and the lowest-indexed entries equal to it. One pass per row, no
// temporary the size of S (comparisons summed as tensors would make int64 copies of it).
template <typename T>
void FixBoundary(const at::Tensor& S, const at::Tensor& values, at::Tensor& indices) {
  const int64_t rows = S.size(0), m = S.size(1), kk = values.size(1);
  const T* s = S.data_ptr<T>();
  const T* v = values.data_ptr<T>();
  int64_t* idx = indices.data_ptr<int64_t>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* row = s + r * m;
      const T kth = v[r * kk + kk - 1];
      int64_t above = 0, equal = 0;
      for (int64_t c = 0; c < m; ++c) {
        above += row[c] > kth;
        equal += row[c] == kth;
      }
      if (above + equal <= kk) continue;
      int64_t need = kk - above, o = 0;
      for (int64_t c = 0; c < m && o < kk; ++c)
        if (row[c] > kth || (row[c] == kth && need-- > 0)) idx[r * kk + o++] = c;
    }
  });
}

// The kk best of each row of S [q, mb] as (scores, local indices), best first, equal scores in
// ascending index order: topk's values (which are unique) with the boundary fixed as above, then
// ordered by OrderAndKeep.
std::pair<at::Tensor, at::Tensor> SelectBest(const at::Tensor& S, int64_t kk) {
  auto [values, indices] = at::topk(S, kk, 1, true, true);
  values = values.contiguous();
  indices = indices.contiguous();
  if (S.scalar_type() == at::kFloat)
    FixBoundary<float>(S, values, indices);
  else
    FixBoundary<double>(S, values, indices);
  return OrderAndKeep(S.gather(1, indices), indices, kk);
}

}  // namespace

at::Tensor TargetRanks(const at::Tensor& queries, const at::Tensor& index, const at::Tensor& targets, int64_t block) {
  const int64_t n = queries.size(0), m = index.size(0), t = targets.size(1);
  at::Tensor out = at::empty({n, t}, at::kLong);
  if (n == 0 || t == 0) return out;
  const int64_t rows = std::max<int64_t>(1, std::min(n, block / std::max<int64_t>(m, 1)));
  const at::Tensor indexT = index.t();
  for (int64_t r0 = 0; r0 < n; r0 += rows) {
    const int64_t len = std::min(rows, n - r0);
    at::Tensor S = at::mm(queries.narrow(0, r0, len), indexT);
    at::Tensor part = at::empty({len, t}, at::kLong);
    at::Tensor tg = targets.narrow(0, r0, len).contiguous();
    if (S.scalar_type() == at::kFloat)
      CountAtLeast<float>(S, tg, part);
    else
      CountAtLeast<double>(S, tg, part);
    out.narrow(0, r0, len).copy_(part);
  }
  return out;
}

std::pair<at::Tensor, at::Tensor> TopK(const at::Tensor& queries, const at::Tensor& index, int64_t k, int64_t offset,
                                       const at::Tensor& previousScores, const at::Tensor& previousIndices,
                                       int64_t block) {
  const int64_t n = queries.size(0), m = index.size(0);
  const int64_t kp = previousScores.defined() ? previousScores.size(1) : 0;
  const int64_t kout = std::min(k, kp + m);
  at::Tensor outScores = at::empty({n, kout}, queries.options());
  at::Tensor outIndices = at::empty({n, kout}, at::kLong);
  if (n == 0 || kout == 0) return {outScores, outIndices};
  const Blocks blocks = TopKBlocks(n, m, block);
  for (int64_t r0 = 0; r0 < n; r0 += blocks.queryRows) {
    const int64_t len = std::min(blocks.queryRows, n - r0);
    const at::Tensor q = queries.narrow(0, r0, len);
    at::Tensor bestScores, bestIndices;
    if (kp > 0) {
      bestScores = previousScores.narrow(0, r0, len);
      bestIndices = previousIndices.narrow(0, r0, len);
    }
    for (int64_t m0 = 0; m0 < m; m0 += blocks.indexRows) {
      const int64_t mb = std::min(blocks.indexRows, m - m0);
      at::Tensor S = at::mm(q, index.narrow(0, m0, mb).t());
      auto [scores, local] = SelectBest(S, std::min(k, mb));
      at::Tensor global = local + (offset + m0);
      if (bestScores.defined()) {
        scores = at::cat({bestScores, scores}, 1);
        global = at::cat({bestIndices, global}, 1);
      }
      std::tie(bestScores, bestIndices) = OrderAndKeep(scores, global, std::min(k, scores.size(1)));
    }
    if (m == 0) std::tie(bestScores, bestIndices) = OrderAndKeep(bestScores, bestIndices, kout);
    outScores.narrow(0, r0, len).copy_(bestScores);
    outIndices.narrow(0, r0, len).copy_(bestIndices);
  }
  return {outScores, outIndices};
}

namespace {

// The first non-finite element of a contiguous float tensor, or numel() when there is none.
template <typename T>
int64_t FirstNonFinite(const at::Tensor& t) {
  const T* p = t.data_ptr<T>();
  const int64_t n = t.numel();
  std::atomic<int64_t> first{n};
  at::parallel_for(0, n, int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end && i < first.load(std::memory_order_relaxed); ++i) {
      if (!std::isfinite(p[i])) {
        int64_t seen = first.load();
        while (i < seen && !first.compare_exchange_weak(seen, i)) {
        }
        break;
      }
    }
  });
  return first.load();
}

// Checked on the worker thread: a large index would hold the event loop for a long time.
void CheckFiniteRows(const at::Tensor& t, const std::string& name) {
  const int64_t i = t.scalar_type() == at::kFloat ? FirstNonFinite<float>(t) : FirstNonFinite<double>(t);
  if (i == t.numel()) return;
  const int64_t d = std::max<int64_t>(t.size(1), 1);
  ThrowRangeError(name + ": row " + std::to_string(i / d) + ", column " + std::to_string(i % d) +
                  " is not finite (data[" + std::to_string(i) + "])");
}

const std::vector<at::ScalarType> kFloats{at::kFloat, at::kDouble};
constexpr int64_t kMaxIndex = std::numeric_limits<int32_t>::max();

struct Inputs {
  std::vector<JsTensor> held;  // keeps the JS arrays alive while the worker reads them
  at::Tensor queries, index;
};

// query [n, d] and index [m, d] of one dtype; m + offset must fit an Int32Array index.
Inputs ReadPair(const Napi::CallbackInfo& info) {
  Inputs in;
  in.held.push_back(ReadTensor(info[0], TensorSpec{"query", kFloats, {-1, -1}}));
  in.queries = in.held.back().tensor;
  const int64_t d = in.queries.size(1);
  in.held.push_back(ReadTensor(info[1], TensorSpec{"index", {in.queries.scalar_type()}, {-1, d}}));
  in.index = in.held.back().tensor;
  if (d == 0) ThrowRangeError("query: rows of width 0 have no similarity");
  if (in.index.size(0) > kMaxIndex) ThrowRangeError("index: more than 2^31 - 1 rows");
  return in;
}

Napi::Object OptionsAt(const Napi::CallbackInfo& info, size_t i, bool required, const char* what) {
  if (info.Length() <= i || info[i].IsUndefined()) {
    if (required) ThrowTypeError(std::string("options: expected an object ") + what + ", got undefined");
    return Napi::Object::New(info.Env());
  }
  if (!info[i].IsObject() || info[i].IsArray()) ThrowTypeError(std::string("options: expected an object ") + what);
  return info[i].As<Napi::Object>();
}

int64_t ReadBlock(const Napi::Object& options) {
  Napi::Value v = options.Get("block");
  return v.IsUndefined() ? kDefaultRankBlock : ReadInteger(v, "options.block", 1, int64_t{1} << 40);
}

class RanksTask : public Task {
 public:
  RanksTask(Inputs in, JsTensor targets, at::Tensor targetsLong, bool flat, int64_t block)
      : in_(std::move(in)), targets_(std::move(targets)), long_(std::move(targetsLong)), flat_(flat), block_(block) {}

  void Execute() override {
    CheckFiniteRows(in_.queries, "query");
    CheckFiniteRows(in_.index, "index");
    at::Tensor ranks = TargetRanks(in_.queries, in_.index, long_, block_).to(at::kInt);
    result_ = PrepareForJs(flat_ ? ranks.view({-1}) : ranks);
  }

  Napi::Value Resolve(Napi::Env env) override { return WrapTensor(env, result_); }

 private:
  Inputs in_;
  JsTensor targets_;
  at::Tensor long_, result_;
  bool flat_;
  int64_t block_;
};

Napi::Value RunTargetRanks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    Inputs in = ReadPair(info);
    const int64_t n = in.queries.size(0), m = in.index.size(0);
    JsTensor targets = ReadTensor(info[2], TensorSpec{"targets", {at::kInt}, {}, true});
    const at::Tensor& t = targets.tensor;
    const bool flat = t.dim() == 1;
    if (!(t.dim() == 1 || t.dim() == 2) || t.size(0) != n)
      ThrowRangeError("targets: expected shape [" + std::to_string(n) + "] or [" + std::to_string(n) +
                      ", *] (one row per query)");
    const int32_t* p = t.data_ptr<int32_t>();
    for (int64_t i = 0; i < t.numel(); ++i)
      if (p[i] < 0 || p[i] >= m)
        ThrowRangeError("targets.data[" + std::to_string(i) + "] = " + std::to_string(p[i]) +
                        " is not a row of the index (it has " + std::to_string(m) + ")");
    at::Tensor targetsLong = (flat ? t.view({n, 1}) : t).to(at::kLong);
    const int64_t block = ReadBlock(OptionsAt(info, 3, false, "{ block? }"));
    return RunAsync(env, std::make_unique<RanksTask>(std::move(in), std::move(targets), targetsLong, flat, block));
  });
}

class TopKTask : public Task {
 public:
  TopKTask(Inputs in, int64_t k, int64_t offset, std::vector<JsTensor> previous, int64_t block)
      : in_(std::move(in)), k_(k), offset_(offset), previous_(std::move(previous)), block_(block) {}

  void Execute() override {
    CheckFiniteRows(in_.queries, "query");
    CheckFiniteRows(in_.index, "index");
    at::Tensor ps, pi;
    if (!previous_.empty()) {
      ps = previous_[0].tensor;
      pi = previous_[1].tensor.to(at::kLong);
    }
    auto [scores, indices] = TopK(in_.queries, in_.index, k_, offset_, ps, pi, block_);
    scores_ = PrepareForJs(scores);
    indices_ = PrepareForJs(indices.to(at::kInt));
  }

  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("scores", WrapTensor(env, scores_));
    o.Set("indices", WrapTensor(env, indices_));
    return o;
  }

 private:
  Inputs in_;
  int64_t k_, offset_;
  std::vector<JsTensor> previous_;
  int64_t block_;
  at::Tensor scores_, indices_;
};

std::vector<JsTensor> ReadPrevious(const Napi::Object& options, const at::Tensor& queries, int64_t offset) {
  std::vector<JsTensor> out;
  Napi::Value v = options.Get("previous");
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsObject()) ThrowTypeError("options.previous: expected { scores, indices } from an earlier topK call");
  auto prev = v.As<Napi::Object>();
  const int64_t n = queries.size(0);
  out.push_back(
      ReadTensor(prev.Get("scores"), TensorSpec{"options.previous.scores", {queries.scalar_type()}, {n, -1}}));
  const int64_t kp = out[0].tensor.size(1);
  out.push_back(ReadTensor(prev.Get("indices"), TensorSpec{"options.previous.indices", {at::kInt}, {n, kp}}));
  if (!at::isfinite(out[0].tensor).all().item<bool>())
    ThrowRangeError("options.previous.scores: non-finite values are not allowed here");
  const int32_t* p = out[1].tensor.data_ptr<int32_t>();
  for (int64_t i = 0; i < out[1].tensor.numel(); ++i)
    if (p[i] < 0 || p[i] >= offset)
      ThrowRangeError("options.previous.indices.data[" + std::to_string(i) + "] = " + std::to_string(p[i]) +
                      " is not an index row before options.offset (" + std::to_string(offset) + ")");
  return out;
}

Napi::Value RunTopK(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    Inputs in = ReadPair(info);
    Napi::Object options = OptionsAt(info, 2, true, "{ k, offset?, previous?, block? }");
    const int64_t k = ReadInteger(options.Get("k"), "options.k", 1, kMaxIndex);
    Napi::Value off = options.Get("offset");
    const int64_t offset = off.IsUndefined() ? 0 : ReadInteger(off, "options.offset", 0, kMaxIndex);
    if (offset + in.index.size(0) > kMaxIndex) ThrowRangeError("options.offset: offset + index rows exceeds 2^31 - 1");
    std::vector<JsTensor> previous = ReadPrevious(options, in.queries, offset);
    const int64_t block = ReadBlock(options);
    return RunAsync(env, std::make_unique<TopKTask>(std::move(in), k, offset, std::move(previous), block));
  });
}

}  // namespace

void InitRank(Napi::Env env, Napi::Object exports) {
  Napi::Object rank = Napi::Object::New(env);
  rank.Set("targetRanks", Napi::Function::New(env, RunTargetRanks, "targetRanks"));
  rank.Set("topK", Napi::Function::New(env, RunTopK, "topK"));
  exports.Set("rank", rank);
}

}  // namespace vilref
