// Portable 512-bit vectors for the CPU kernels (GCC/Clang vector extensions; -march picks the instructions).
// Included by the kernel sources; build.py hashes this header with each of them.
#pragma once

#include <cstdint>
#include <limits>

#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <type_traits>

namespace shiftadd {

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(64)));
  static constexpr int lanes = 64 / sizeof(T);
};

// max(a, b) and min(a, b) as a > b ? a : b and a < b ? a : b (b where either is NaN), one instruction each with
// AVX-512: GCC compiles some of those selects on vectors to a compare and a blend, two.
template <typename V>
inline V vmax(V a, V b) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<V, Vec<float>::type>) return (V)_mm512_max_ps((__m512)a, (__m512)b);
  if constexpr (std::is_same_v<V, Vec<double>::type>) return (V)_mm512_max_pd((__m512d)a, (__m512d)b);
#endif
  return a > b ? a : b;
}
template <typename V>
inline V vmin(V a, V b) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<V, Vec<float>::type>) return (V)_mm512_min_ps((__m512)a, (__m512)b);
  if constexpr (std::is_same_v<V, Vec<double>::type>) return (V)_mm512_min_pd((__m512d)a, (__m512d)b);
#endif
  return a < b ? a : b;
}

// |a|, by clearing the sign bits (one instruction; max(a, -a) takes two). Scalars as std::abs.
template <typename T>
inline T vabs(T a) {
  if constexpr (std::is_floating_point_v<T>) {
    return a < T(0) ? -a : a;
  } else {
    using E = std::remove_reference_t<decltype(a[0])>;
    using Bits = std::conditional_t<sizeof(E) == 4, int32_t, int64_t>;
    typedef Bits I __attribute__((vector_size(sizeof(T))));
    return (T)((I)a & std::numeric_limits<Bits>::max());
  }
}

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

// Runs step(std::integral_constant<int, NV>{}, i) over [0, n): blocks of NV = CB vectors of T (independent sums in
// registers), then single vectors, then NV = 0 (one scalar element) for what is left.
template <typename T, int CB = 4, typename Step>
inline void vector_loop(int64_t n, Step&& step) {
  constexpr int L = Vec<T>::lanes;
  int64_t i = 0;
  for (; i + CB * L <= n; i += CB * L) step(std::integral_constant<int, CB>{}, i);
  for (; i + L <= n; i += L) step(std::integral_constant<int, 1>{}, i);
  for (; i < n; ++i) step(std::integral_constant<int, 0>{}, i);
}

// What a vector_loop step of NV works on, as one type: N values of U, W elements each (NV vectors of T, or for
// NV = 0 one scalar T), so that a step's body is written once for both.
template <typename T, int NV>
struct Lanes {
  using U = std::conditional_t<NV == 0, T, typename Vec<T>::type>;
  static constexpr int N = NV == 0 ? 1 : NV;
  static constexpr int W = NV == 0 ? 1 : Vec<T>::lanes;
};

}  // namespace shiftadd
