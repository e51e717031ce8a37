// MeshLayout against hand-written tables (torchtitan v0.2.2 mesh order) and
// against an independent oracle built the older way (dp_shard split into
// dp_shard_mod_ep x dp_shard_in_ep).
#include "trainer/parallel/mesh_layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace partune::trainer {
namespace {

using Groups = std::vector<std::vector<int>>;

ParallelDims dims(int dpr, int dps, int cp, int tp, int ep, int etp) {
  ParallelDims d;
  d.dp_replicate = dpr;
  d.dp_shard = dps;
  d.cp = cp;
  d.tp = tp;
  d.ep = ep;
  d.etp = etp;
  return d;
}

struct Row {
  const char* what;
  int world;
  ParallelDims d;
  MeshDim dim;
  Groups expected;
};

const Row kTable[] = {
    // dp_shard alone
    {"fsdp4 dp_shard", 4, dims(1, 4, 1, 1, 1, 1), MeshDim::dp_shard, {{0, 1, 2, 3}}},
    {"fsdp4 tp", 4, dims(1, 4, 1, 1, 1, 1), MeshDim::tp, {{0}, {1}, {2}, {3}}},
    {"fsdp4 ep off: ep is the rank", 4, dims(1, 4, 1, 1, 1, 1), MeshDim::ep, {{0}, {1}, {2}, {3}}},
    {"fsdp4 ep off: efsdp = fsdp", 4, dims(1, 4, 1, 1, 1, 1), MeshDim::efsdp, {{0, 1, 2, 3}}},
    // TP alone
    {"tp4 tp", 4, dims(1, 1, 1, 4, 1, 1), MeshDim::tp, {{0, 1, 2, 3}}},
    {"tp4 fsdp", 4, dims(1, 1, 1, 4, 1, 1), MeshDim::fsdp, {{0}, {1}, {2}, {3}}},
    // dp_shard 2 x TP 2: tp innermost
    {"dps2 tp2 tp", 4, dims(1, 2, 1, 2, 1, 1), MeshDim::tp, {{0, 1}, {2, 3}}},
    {"dps2 tp2 dp_shard", 4, dims(1, 2, 1, 2, 1, 1), MeshDim::dp_shard, {{0, 2}, {1, 3}}},
    {"dps2 tp2 ep off: etp = tp", 4, dims(1, 2, 1, 2, 1, 1), MeshDim::etp, {{0, 1}, {2, 3}}},
    // dp_shard 2 x TP 2, EP 4 borrowing TP (ETP 1)
    {"dps2 tp2 ep4 etp1 ep", 4, dims(1, 2, 1, 2, 4, 1), MeshDim::ep, {{0, 1, 2, 3}}},
    {"dps2 tp2 ep4 etp1 efsdp", 4, dims(1, 2, 1, 2, 4, 1), MeshDim::efsdp, {{0}, {1}, {2}, {3}}},
    {"dps2 tp2 ep4 etp1 etp", 4, dims(1, 2, 1, 2, 4, 1), MeshDim::etp, {{0}, {1}, {2}, {3}}},
    {"dps2 tp2 ep4 etp1 tp", 4, dims(1, 2, 1, 2, 4, 1), MeshDim::tp, {{0, 1}, {2, 3}}},
    // dp_shard 2 x TP 2, EP 2 with ETP = TP: EP strides over TP
    {"dps2 tp2 ep2 etp2 ep", 4, dims(1, 2, 1, 2, 2, 2), MeshDim::ep, {{0, 2}, {1, 3}}},
    {"dps2 tp2 ep2 etp2 etp", 4, dims(1, 2, 1, 2, 2, 2), MeshDim::etp, {{0, 1}, {2, 3}}},
    {"dps2 tp2 ep2 etp2 efsdp", 4, dims(1, 2, 1, 2, 2, 2), MeshDim::efsdp, {{0}, {1}, {2}, {3}}},
    // dp_shard 2 x TP 2, EP 2 with ETP 1: EP takes TP, efsdp takes dp_shard
    {"dps2 tp2 ep2 etp1 ep", 4, dims(1, 2, 1, 2, 2, 1), MeshDim::ep, {{0, 1}, {2, 3}}},
    {"dps2 tp2 ep2 etp1 efsdp", 4, dims(1, 2, 1, 2, 2, 1), MeshDim::efsdp, {{0, 2}, {1, 3}}},
    // dp_shard 4, EP 2
    {"dps4 ep2 ep", 4, dims(1, 4, 1, 1, 2, 1), MeshDim::ep, {{0, 1}, {2, 3}}},
    {"dps4 ep2 efsdp", 4, dims(1, 4, 1, 1, 2, 1), MeshDim::efsdp, {{0, 2}, {1, 3}}},
    // world 8: HSDP 2 x dp_shard 2 x TP 2, EP 4 ETP 1
    {"w8 dpr2 dps2 tp2 ep4 dp_replicate",
     8,
     dims(2, 2, 1, 2, 4, 1),
     MeshDim::dp_replicate,
     {{0, 4}, {1, 5}, {2, 6}, {3, 7}}},
    {"w8 dpr2 dps2 tp2 ep4 dp_shard", 8, dims(2, 2, 1, 2, 4, 1), MeshDim::dp_shard, {{0, 2}, {1, 3}, {4, 6}, {5, 7}}},
    {"w8 dpr2 dps2 tp2 ep4 batch", 8, dims(2, 2, 1, 2, 4, 1), MeshDim::batch, {{0, 2, 4, 6}, {1, 3, 5, 7}}},
    {"w8 dpr2 dps2 tp2 ep4 ep", 8, dims(2, 2, 1, 2, 4, 1), MeshDim::ep, {{0, 1, 2, 3}, {4, 5, 6, 7}}},
    {"w8 dpr2 dps2 tp2 ep4 efsdp", 8, dims(2, 2, 1, 2, 4, 1), MeshDim::efsdp, {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}}},
    // world 8: dp_shard 4 x TP 2, EP 2 ETP 2
    {"w8 dps4 tp2 ep2 etp2 ep", 8, dims(1, 4, 1, 2, 2, 2), MeshDim::ep, {{0, 2}, {1, 3}, {4, 6}, {5, 7}}},
    {"w8 dps4 tp2 ep2 etp2 efsdp", 8, dims(1, 4, 1, 2, 2, 2), MeshDim::efsdp, {{0, 4}, {1, 5}, {2, 6}, {3, 7}}},
    {"w8 dps4 tp2 ep2 etp2 etp", 8, dims(1, 4, 1, 2, 2, 2), MeshDim::etp, {{0, 1}, {2, 3}, {4, 5}, {6, 7}}},
    // world 8: dp_shard 4 x TP 2, EP 4 ETP 1
    {"w8 dps4 tp2 ep4 etp1 ep", 8, dims(1, 4, 1, 2, 4, 1), MeshDim::ep, {{0, 1, 2, 3}, {4, 5, 6, 7}}},
    {"w8 dps4 tp2 ep4 etp1 efsdp", 8, dims(1, 4, 1, 2, 4, 1), MeshDim::efsdp, {{0, 4}, {1, 5}, {2, 6}, {3, 7}}},
    // world 8: dp_shard 2 x CP 2 x TP 2: fsdp and loss include CP, batch does not
    {"w8 dps2 cp2 tp2 cp", 8, dims(1, 2, 2, 2, 4, 1), MeshDim::cp, {{0, 2}, {1, 3}, {4, 6}, {5, 7}}},
    {"w8 dps2 cp2 tp2 fsdp", 8, dims(1, 2, 2, 2, 4, 1), MeshDim::fsdp, {{0, 2, 4, 6}, {1, 3, 5, 7}}},
    {"w8 dps2 cp2 tp2 loss", 8, dims(1, 2, 2, 2, 4, 1), MeshDim::loss, {{0, 2, 4, 6}, {1, 3, 5, 7}}},
    {"w8 dps2 cp2 tp2 batch", 8, dims(1, 2, 2, 2, 4, 1), MeshDim::batch, {{0, 4}, {1, 5}, {2, 6}, {3, 7}}},
    {"w8 dps2 cp2 tp2 ep4 ep", 8, dims(1, 2, 2, 2, 4, 1), MeshDim::ep, {{0, 1, 2, 3}, {4, 5, 6, 7}}},
    {"w8 dps2 cp2 tp2 ep4 efsdp", 8, dims(1, 2, 2, 2, 4, 1), MeshDim::efsdp, {{0, 4}, {1, 5}, {2, 6}, {3, 7}}},
};

TEST(MeshLayout, Table) {
  for (const auto& row : kTable) {
    MeshLayout layout(row.d, row.world);
    EXPECT_EQ(layout.groups(row.dim), row.expected) << row.what;
    for (const auto& g : row.expected)
      for (int r : g) EXPECT_EQ(layout.members(row.dim, r), g) << row.what << " rank " << r;
  }
}

TEST(MeshLayout, Coordinates) {
  // world 8, dp_shard 4 x TP 2, EP 2 ETP 2: dense rank = dps*2 + tp, sparse rank = efsdp*4 + ep*2 + etp.
  MeshLayout layout(dims(1, 4, 1, 2, 2, 2), 8);
  auto c = layout.coord(5);
  EXPECT_EQ(c.dp_shard, 2);
  EXPECT_EQ(c.tp, 1);
  EXPECT_EQ(c.efsdp, 1);
  EXPECT_EQ(c.ep, 0);
  EXPECT_EQ(c.etp, 1);
  EXPECT_EQ(layout.efsdp_degree(), 2);
}

TEST(MeshLayout, RejectsIllegalDims) {
  EXPECT_THROW(MeshLayout(dims(1, -1, 1, 1, 1, 1), 4), std::invalid_argument);  // unresolved
  try {
    MeshLayout(dims(1, 2, 1, 2, 3, 1), 4);
    FAIL() << "EP 3 on dp_shard 2 x TP 2 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("ep_borrow_etp1"), std::string::npos) << e.what();
  }
  try {
    MeshLayout(dims(1, 2, 1, 2, 2, 3), 4);
    FAIL() << "ETP 3 with TP 2 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("etp_one_or_tp"), std::string::npos) << e.what();
  }
  EXPECT_THROW(MeshLayout(dims(1, 2, 1, 2, 1, 1), 8), std::invalid_argument);  // product != world
  MeshLayout ok(dims(1, 2, 1, 2, 1, 1), 4);
  EXPECT_THROW(ok.members(MeshDim::tp, 4), std::out_of_range);
}

// The EP / efsdp / etp groups as torchtitan built them before the sparse mesh:
// dense mesh [pp, dpr, dp_shard_mod_ep, dp_shard_in_ep, cp, tp], EP = in_ep x cp
// (x tp when ETP = 1), efsdp = dp_shard_mod_ep.
std::vector<int> oracle(const ParallelDims& d, MeshDim dim, int rank) {
  const int borrowed = d.cp * (d.etp == 1 ? d.tp : 1);
  const int in_ep = d.ep / borrowed;
  const int mod_ep = d.dp_shard / in_ep;
  auto rank_of = [&](int pp, int dpr, int mod, int in, int cp, int tp) {
    return ((((pp * d.dp_replicate + dpr) * mod_ep + mod) * in_ep + in) * d.cp + cp) * d.tp + tp;
  };
  int c[6], r = rank;
  const int shape[6] = {d.pp, d.dp_replicate, mod_ep, in_ep, d.cp, d.tp};
  for (int i = 5; i >= 0; --i) {
    c[i] = r % shape[i];
    r /= shape[i];
  }
  std::vector<int> out;
  for (int mod = 0; mod < mod_ep; ++mod)
    for (int in = 0; in < in_ep; ++in)
      for (int cp = 0; cp < d.cp; ++cp)
        for (int tp = 0; tp < d.tp; ++tp) {
          bool same;
          if (dim == MeshDim::ep)
            same = mod == c[2] && (d.etp == 1 || tp == c[5]);
          else if (dim == MeshDim::efsdp)
            same = in == c[3] && cp == c[4] && tp == c[5];
          else  // etp
            same = mod == c[2] && in == c[3] && cp == c[4] && (d.etp != 1 || tp == c[5]);
          if (same) out.push_back(rank_of(c[0], c[1], mod, in, cp, tp));
        }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(MeshLayout, EveryLegalLayoutUpTo8MatchesSplitOracleAndPartitions) {
  int checked = 0;
  for (int world = 1; world <= 8; ++world)
    for (int dpr = 1; dpr <= world; ++dpr)
      for (int cp = 1; cp <= world; ++cp)
        for (int tp = 1; tp <= world; ++tp)
          for (int ep = 1; ep <= world; ++ep)
            for (int etp : {1, tp}) {
              ParallelDims d = dims(dpr, -1, cp, tp, ep, etp);
              if (!check_parallel_dims(d, world).empty()) continue;
              if (ep > 1 && d.ep % (d.cp * (etp == 1 ? tp : 1)) != 0) continue;  // oracle needs the older rule
              MeshLayout layout(d, world);
              for (MeshDim dim : kAllMeshDims) {
                std::set<int> seen;
                for (const auto& g : layout.groups(dim)) {
                  ASSERT_EQ(static_cast<int>(g.size()), layout.size(dim)) << mesh_dim_name(dim);
                  ASSERT_TRUE(std::is_sorted(g.begin(), g.end()));
                  for (int r : g) ASSERT_TRUE(seen.insert(r).second) << mesh_dim_name(dim) << " repeats " << r;
                }
                ASSERT_EQ(static_cast<int>(seen.size()), world);
              }
              if (ep > 1) {
                for (int r = 0; r < world; ++r)
                  for (MeshDim dim : {MeshDim::ep, MeshDim::efsdp, MeshDim::etp})
                    ASSERT_EQ(layout.members(dim, r), oracle(d, dim, r))
                        << "world " << world << " dpr " << dpr << " dps " << d.dp_shard << " cp " << cp << " tp " << tp
                        << " ep " << ep << " etp " << etp << " dim " << mesh_dim_name(dim) << " rank " << r;
              }
              ++checked;
            }
  EXPECT_GT(checked, 50);
}

}  // namespace
}  // namespace partune::trainer
