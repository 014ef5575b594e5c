// L2-regularised logistic regression for the linear probe (lib/eval/probe.ts): the loss, its
// gradient and the products X·w and Xᵀ·r as batched LibTorch ops in float64, minimised by L-BFGS.
// One-vs-rest classes are independent problems solved side by side: each keeps its own history,
// step size and stopping state (so each follows exactly the path it would alone), while every
// evaluation scores all of them with one matrix product. JS reaches this as logistic.fit /
// logistic.predict.
#pragma once

#include <napi.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace vilref {

// Defaults live in lib/eval/probe.ts (LBFGS_DEFAULTS); the JS side always passes all three.
struct LbfgsOptions {
  int64_t maxIter = 0;
  double gradTol = 0;  // stop when the largest gradient component is below this
  int64_t memory = 0;
};

struct ProblemReport {
  double value = 0;
  int64_t iterations = 0;
  bool converged = false;
};

// A batch of independent smooth problems over parameter rows. Evaluate gets the rows of the
// problems `which` ([which.size(), p], float64) and writes their values and gradients.
class BatchObjective {
 public:
  virtual ~BatchObjective() = default;
  virtual void Evaluate(const at::Tensor& params, const std::vector<int64_t>& which, std::vector<double>& values,
                        at::Tensor& grads) = 0;
};

// Minimises every problem from params [B, p] (float64, contiguous; updated in place).
std::vector<ProblemReport> MinimizeBatch(BatchObjective& objective, at::Tensor& params, const LbfgsOptions& options);

// One-vs-rest: K binary problems on x [n, d] with targets y [n, K] (1, 0, NaN unknown: that row is
// left out of that class). Minimises mean loss over the known rows + λ/2‖w‖², λ = 1/(C·rows),
// bias not penalised (scikit-learn's C·Σ loss + ½‖w‖² scaled). params [K, d + 1]: w then b.
std::vector<ProblemReport> FitSigmoid(const at::Tensor& x, const at::Tensor& y, double C, at::Tensor& params,
                                      const LbfgsOptions& options);

// Multinomial: classes t [n] (int64, 0..K−1); params [1, K·d + K]: W row-major then b.
std::vector<ProblemReport> FitSoftmax(const at::Tensor& x, const at::Tensor& t, int64_t K, double C, at::Tensor& params,
                                      const LbfgsOptions& options);

// logistic = { fit(args), predict(x, model) }
void InitLogistic(Napi::Env env, Napi::Object exports);

}  // namespace vilref
