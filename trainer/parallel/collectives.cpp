#include "trainer/parallel/collectives.h"

#include <numeric>

namespace partune::trainer {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Keeps a Group alive inside an autograd context (saved_data holds IValues).
struct GroupHolder : torch::CustomClassHolder {
  explicit GroupHolder(GroupPtr g) : group(std::move(g)) {}
  GroupPtr group;
};

void save_group(AutogradContext* ctx, const GroupPtr& g) {
  ctx->saved_data["group"] = c10::IValue::make_capsule(c10::make_intrusive<GroupHolder>(g));
}
GroupPtr load_group(AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<GroupHolder>(ctx->saved_data["group"].toCapsule())->group;
}

std::vector<int64_t> to_vec(const c10::IValue& v) { return v.toIntVector(); }

torch::Tensor sum_in_place(torch::Tensor t, const Group& g) {
  c10d_compat::all_reduce_sum(*g.backend, t);
  return t;
}

// Gradient sum in float32, returned in the gradient's dtype.
torch::Tensor grad_sum(const torch::Tensor& grad, const Group& g) {
  auto t = grad.to(torch::kFloat32).contiguous().clone();
  return sum_in_place(t, g).to(grad.scalar_type());
}

torch::Tensor exchange_rows(const torch::Tensor& x, const std::vector<int64_t>& out_splits,
                            const std::vector<int64_t>& in_splits, const Group& g) {
  TORCH_CHECK(static_cast<int>(out_splits.size()) == g.size() && static_cast<int>(in_splits.size()) == g.size(),
              "all_to_all: split lists must have one entry per group rank (", g.size(), ")");
  TORCH_CHECK(std::accumulate(in_splits.begin(), in_splits.end(), int64_t{0}) == x.size(0),
              "all_to_all: input splits sum to ", std::accumulate(in_splits.begin(), in_splits.end(), int64_t{0}),
              " but the input has ", x.size(0), " rows");
  auto in = x.contiguous();
  auto sizes = in.sizes().vec();
  sizes[0] = std::accumulate(out_splits.begin(), out_splits.end(), int64_t{0});
  auto out = torch::empty(sizes, in.options());
  c10d_compat::all_to_all(*g.backend, out, in, out_splits, in_splits);
  return out;
}

struct AllReduceSum : torch::autograd::Function<AllReduceSum> {
  static torch::Tensor forward(AutogradContext*, const torch::Tensor& x, GroupPtr g) {
    return sum_in_place(x.contiguous().clone(), *g);
  }
  static variable_list backward(AutogradContext*, variable_list grads) { return {grads[0], torch::Tensor()}; }
};

struct GradAllReduce : torch::autograd::Function<GradAllReduce> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, GroupPtr g) {
    save_group(ctx, g);
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {grad_sum(grads[0], *load_group(ctx)), torch::Tensor()};
  }
};

struct AllToAll : torch::autograd::Function<AllToAll> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, std::vector<int64_t> out_splits,
                               std::vector<int64_t> in_splits, GroupPtr g) {
    save_group(ctx, g);
    ctx->saved_data["out_splits"] = out_splits;
    ctx->saved_data["in_splits"] = in_splits;
    return exchange_rows(x, out_splits, in_splits, *g);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // Rows go back where they came from: what was received is sent, and vice versa.
    auto back = exchange_rows(grads[0], to_vec(ctx->saved_data["in_splits"]), to_vec(ctx->saved_data["out_splits"]),
                              *load_group(ctx));
    return {back, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

bool trivial(const GroupPtr& g) {
  TORCH_CHECK(g != nullptr, "collective on a null group");
  return g->size() == 1;
}

}  // namespace

torch::Tensor all_reduce_sum(const torch::Tensor& x, const GroupPtr& group) {
  return trivial(group) ? x : AllReduceSum::apply(x, group);
}

torch::Tensor grad_all_reduce(const torch::Tensor& x, const GroupPtr& group) {
  return trivial(group) ? x : GradAllReduce::apply(x, group);
}

torch::Tensor all_to_all(const torch::Tensor& x, const std::vector<int64_t>& output_splits,
                         const std::vector<int64_t>& input_splits, const GroupPtr& group) {
  if (trivial(group)) {
    TORCH_CHECK(output_splits.size() == 1 && input_splits.size() == 1 && output_splits[0] == input_splits[0] &&
                    input_splits[0] == x.size(0),
                "all_to_all on one rank: splits must both be {", x.size(0), "}");
    return x;
  }
  return AllToAll::apply(x, output_splits, input_splits, group);
}

torch::Tensor all_reduce_max(const torch::Tensor& x, const GroupPtr& group) {
  if (trivial(group)) return x;
  torch::NoGradGuard no_grad;
  auto t = x.detach().contiguous().clone();
  c10d_compat::all_reduce_max(*group->backend, t);
  return t;
}

int64_t all_reduce_sum(int64_t value, const GroupPtr& group) {
  if (trivial(group)) return value;
  auto t = torch::tensor({value}, torch::kInt64).to(group->device);
  c10d_compat::all_reduce_sum(*group->backend, t);
  return t.cpu().item<int64_t>();
}

std::vector<int64_t> all_to_all_counts(const std::vector<int64_t>& counts, int64_t per_rank, const GroupPtr& group) {
  TORCH_CHECK(static_cast<int64_t>(counts.size()) == per_rank * group->size(), "all_to_all_counts: ", counts.size(),
              " counts for ", group->size(), " ranks x ", per_rank);
  if (group->size() == 1) return counts;
  auto in = torch::tensor(counts, torch::kInt64).to(group->device);
  std::vector<int64_t> splits(group->size(), per_rank);
  auto out = exchange_rows(in, splits, splits, *group).to(torch::kCPU);
  return std::vector<int64_t>(out.data_ptr<int64_t>(), out.data_ptr<int64_t>() + out.numel());
}

}  // namespace partune::trainer
