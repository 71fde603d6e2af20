// Portable 512-bit vectors for the CPU kernels (GCC/Clang vector extensions; -march picks the instructions).
// Included by cpu_adder.cpp and cpu_depthwise.cpp; build.py hashes this header with each source.
#pragma once

#include <cstdint>

namespace shiftadd {

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(64)));
  static constexpr int lanes = 64 / sizeof(T);
};

template <typename V>
inline V vmax(V a, V b) { return a > b ? a : b; }
template <typename V>
inline V vmin(V a, V b) { return a < b ? a : b; }

// Unaligned vector load and store.
template <typename V, typename T>
inline V load(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename T>
inline void store(T* p, const V& v) { __builtin_memcpy(p, &v, sizeof(V)); }

// Every lane set to s.
template <typename V, typename T>
inline V broadcast(T s) { return s - V{}; }

}  // namespace shiftadd
