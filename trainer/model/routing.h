// The row permutations MoE routing moves tokens with, shared by the model
// and the expert-parallel dispatcher (which must not depend on the model).
// Defined in model.cpp.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace partune::trainer {

// Row permutations for MoE routing, differentiable without scatters: the
// backward of index_select is an atomic index_add (slow on GPUs, and in bf16
// it rounds at every add); these backwards gather by the inverse instead.
// permute_rows: x[order[i]] for each i; `inverse` is order's inverse
// permutation (inverse[order[i]] = i). Both int64 on x's device.
torch::Tensor permute_rows(const torch::Tensor& x, const torch::Tensor& order, const torch::Tensor& inverse);
// Routed copies of tokens: row i is x[order[i] / k] (x [n, dim], order a
// permutation of n * k rows, row r of the unsorted n * k standing for token
// r / k). Backward: gather by `inverse`, then sum each token's k rows.
torch::Tensor gather_token_rows(const torch::Tensor& x, const torch::Tensor& order, const torch::Tensor& inverse,
                                int64_t k);

}  // namespace partune::trainer
