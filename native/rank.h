// Similarity ranking in blocks: for queries [n, d] against index rows [m, d], the rank of each
// query's target(s) and the k best index rows of each query, without ever holding n×m scores.
// Scores are inner products of the rows as given (cosine when the caller has normalised them);
// float32 or float64, both sides the same. JS reaches these as rank.targetRanks / rank.topK.
#pragma once

#include <napi.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>

namespace vilref {

// Score elements one block may hold (16 Mi: 64 MiB of float32) unless a call says otherwise.
constexpr int64_t kDefaultRankBlock = int64_t{1} << 24;

// 0-based rank of each target: the number of other index rows scoring at least as high as it
// (ties never help). queries [n, d], index [m, d], targets [n, t] int64 → [n, t] int64. Queries
// go in blocks of max(1, block / m) rows, each scored against the whole index, so a target and
// its competitors come from one matrix product.
at::Tensor TargetRanks(const at::Tensor& queries, const at::Tensor& index, const at::Tensor& targets, int64_t block);

// The k best index rows of each query, best first; equal scores in ascending index order.
// Indices are `offset` + the row in `index`. `previousScores`/`previousIndices` ([n, k'], may be
// undefined) are the result of earlier pieces of the same index and are merged in. Returns
// scores [n, min(k, k' + m)] and int64 indices of the same shape.
std::pair<at::Tensor, at::Tensor> TopK(const at::Tensor& queries, const at::Tensor& index, int64_t k, int64_t offset,
                                       const at::Tensor& previousScores, const at::Tensor& previousIndices,
                                       int64_t block);

// rank = { targetRanks(query, index, targets, options?), topK(query, index, options) }
void InitRank(Napi::Env env, Napi::Object exports);

}  // namespace vilref
