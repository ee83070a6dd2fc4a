#pragma once
// The device mesh of ViT-22B-style sharding: `data` replicas, each split over `model` ranks. World rank
// w = d·model + m has data index d and model index m, so the ranks of one model-parallel group (the ones
// that exchange activations every layer) are adjacent world ranks, which MPI launchers place on the same node.
//
//   auto m = vitscale::shard::make_mesh(world, /*data*/ 2, /*model*/ 4);
//   m.model_axis->all_gather(...);   // the 4 ranks with m.data_index, ordered by model index
//   m.data_axis->all_reduce(...);    // the 2 ranks with m.model_index, ordered by data index
//
// make_mesh is collective over `world`; a wrong mesh is a vitscale::error on every rank, never a hang.

#include <vitscale/core/communicator.hpp>
#include <vitscale/core/error.hpp>

#include <cstddef>
#include <memory>
#include <sstream>
#include <vector>

namespace vitscale::shard {

struct mesh {
  int data = 1;
  int model = 1;
};

// One rank's place in a mesh and its communicators along both axes.
struct mesh_communicators {
  mesh shape;
  int data_index = 0;
  int model_index = 0;
  std::unique_ptr<communicator> model_axis;  // ranks with this data_index; rank = model_index
  std::unique_ptr<communicator> data_axis;   // ranks with this model_index; rank = data_index
};

// Lays `world` out as a data x model mesh (collective). Every rank checks that every rank passed the same
// mesh, that both extents are at least 1 and that world.size() == data*model.
inline mesh_communicators make_mesh(communicator& world, int data, int model) {
  const int p = world.size();
  // Exchange first, judge after: a rank that rejected its own arguments before the exchange would leave
  // the others waiting in it.
  const int mine[2] = {data, model};
  std::vector<int> all(2 * static_cast<std::size_t>(p));
  world.all_gather(mine, all.data(), 2, "mesh: the ranks' data x model sizes");

  std::ostringstream differ;
  int differing = 0;
  for (int r = 1; r < p; ++r) {
    if (all[2 * r] == all[0] && all[2 * r + 1] == all[1]) continue;
    differ << (differing++ ? ", " : "") << "rank " << r << " data " << all[2 * r] << " x model " << all[2 * r + 1];
  }
  if (differing > 0)
    vitscale::detail::fail("make_mesh: the ranks passed different meshes: rank 0 data ", all[0], " x model ", all[1],
                           ", but ", differ.str(), " (", world.describe(), ")");
  if (data < 1 || model < 1)
    vitscale::detail::fail("make_mesh: the mesh extents must be at least 1, got data ", data, " x model ", model);
  const long long needed = static_cast<long long>(data) * model;
  if (needed != p)
    vitscale::detail::fail("make_mesh: a data ", data, " x model ", model, " mesh needs ", needed,
                           " ranks, but the communicator has ", p, " (", world.describe(), ")");

  mesh_communicators m;
  m.shape = {data, model};
  m.data_index = world.rank() / model;
  m.model_index = world.rank() % model;
  m.model_axis = world.split(m.data_index, m.model_index, "mesh: model axis");
  m.data_axis = world.split(m.model_index, m.data_index, "mesh: data axis");
  return m;
}

inline mesh_communicators make_mesh(communicator& world, mesh shape) {
  return make_mesh(world, shape.data, shape.model);
}

}  // namespace vitscale::shard
