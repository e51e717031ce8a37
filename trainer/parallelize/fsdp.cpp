#include "trainer/parallelize/fsdp.h"

#include <stdexcept>

namespace partune::trainer {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// shard (flat fp32 leaf) -> full tensor in the gather dtype. Backward: the
// full gradient in float32, padded, reduce-scattered (sum over the group)
// into the shard's gradient. A kept tensor is returned instead of gathering
// again (a unit that does not reshard, recomputed under AC).
struct GatherParam : torch::autograd::Function<GatherParam> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& shard, c10::intrusive_ptr<FsdpParam> p,
                               bool keep) {
    ctx->saved_data["param"] = c10::IValue::make_capsule(p);
    if (p->kept.defined()) return p->kept.detach();
    const Group& g = *p->group;
    auto in = shard.detach().to(p->gather_dtype).contiguous();
    const int64_t padded = in.numel() * g.size();
    auto full = torch::empty(p->shape, in.options());
    if (padded == p->numel) {
      auto flat = full.view({-1});
      c10d_compat::all_gather_into(*g.backend, flat, in);
    } else {
      auto buf = torch::empty({padded}, in.options());
      c10d_compat::all_gather_into(*g.backend, buf, in);
      full.view({-1}).copy_(buf.narrow(0, 0, p->numel));
    }
    if (keep) p->kept = full.detach();
    return full;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto p = c10::static_intrusive_pointer_cast<FsdpParam>(ctx->saved_data["param"].toCapsule());
    const Group& g = *p->group;
    const int64_t n = p->shard.numel();
    torch::Tensor in;
    if (n * g.size() == p->numel) {  // no padding: the gradient itself, in float32
      in = grads[0].to(torch::kFloat32).contiguous().view({-1});
    } else {
      in = torch::zeros({n * g.size()}, grads[0].options().dtype(torch::kFloat32));
      in.narrow(0, 0, p->numel).copy_(grads[0].reshape({-1}));
    }
    auto out = torch::empty({n}, in.options());
    c10d_compat::reduce_scatter_into(*g.backend, out, in);
    return {out.to(p->shard.scalar_type()), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

FsdpUnit& FsdpState::add_unit(const std::string& name, const std::vector<std::pair<std::string, torch::Tensor*>>& slots,
                              const std::vector<GroupPtr>& groups, bool reshard_after_forward,
                              torch::Dtype gather_dtype) {
  if (slots.size() != groups.size()) throw std::logic_error("FsdpState::add_unit: one group per slot");
  auto unit = std::make_unique<FsdpUnit>();
  unit->name = name;
  unit->reshard_after_forward = reshard_after_forward;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slots.size(); ++i) {
    const GroupPtr& g = groups[i];
    if (g->size() == 1) continue;
    auto p = c10::make_intrusive<FsdpParam>();
    p->name = slots[i].first;
    p->slot = slots[i].second;
    p->shard = *p->slot;  // the registered parameter (same TensorImpl)
    p->shape = p->shard.sizes().vec();
    p->numel = p->shard.numel();
    p->group = g;
    p->gather_dtype = gather_dtype;
    const int64_t per_rank = (p->numel + g->size() - 1) / g->size();
    if (p->shard.is_meta()) {  // no values yet: only the shard's shape
      p->shard.set_data(torch::empty({per_rank}, p->shard.options()));
    } else {
      auto flat = torch::zeros({per_rank * g->size()}, p->shard.options());
      flat.narrow(0, 0, p->numel).copy_(p->shard.detach().reshape({-1}));
      p->shard.set_data(flat.narrow(0, per_rank * g->rank, per_rank).clone());
    }
    unit->params.push_back(p);
  }
  units_.push_back(std::move(unit));
  return *units_.back();
}

void FsdpState::unshard(FsdpUnit& unit) {
  for (auto& p : unit.params) *p->slot = GatherParam::apply(p->shard, p, !unit.reshard_after_forward);
}

void FsdpState::reshard(FsdpUnit& unit) {
  for (auto& p : unit.params) *p->slot = p->shard;
}

void FsdpState::drop_kept() {
  for (auto& u : units_)
    for (auto& p : u->params) p->kept = torch::Tensor();
}

}  // namespace partune::trainer
