// Union-find cores for connected-component labelling on an int32 parent array, shared by
// the CPU kernel and (later) a CUDA one. Element i of `parent` holds the index of i's parent.
//
// Invariant the labelling relies on: parent[i] <= i, because a union always hangs the root
// with the larger index under the one with the smaller. Hence the root of a component is
// its smallest index, i.e. its first pixel in raster order, which is exactly the pixel that
// fixes the component's number in skimage/SciPy-style labelling. A CUDA kernel would keep
// these plain versions for sequential phases and replace the store in `unite` by an
// atomicMin on the root.
#pragma once

#include <cstdint>

#include "istd/common.h"

namespace istd {
namespace uf {

// Root of i, halving the path on the way: each visited node is re-pointed to its
// grandparent, which keeps trees shallow without a second traversal. The re-pointing keeps
// parent[i] <= i since a grandparent's index is never above its grandchild's.
ISTD_HD inline int32_t find_root(int32_t* parent, int32_t i) {
  while (parent[i] != i) {
    const int32_t grand = parent[parent[i]];
    parent[i] = grand;
    i = grand;
  }
  return i;
}

// Root of i without writing: for readers that must not race with writers.
ISTD_HD inline int32_t find_root_readonly(const int32_t* parent, int32_t i) {
  while (parent[i] != i) i = parent[i];
  return i;
}

// Merges the sets of a and b; returns the root of the merged set (the smaller root).
ISTD_HD inline int32_t unite(int32_t* parent, int32_t a, int32_t b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a == b) return a;
  if (a < b) {
    parent[b] = a;
    return a;
  }
  parent[a] = b;
  return b;
}

}  // namespace uf
}  // namespace istd
