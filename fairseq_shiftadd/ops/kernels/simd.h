// Portable vectors for the CPU kernels (GCC/Clang vector extensions): the widest the build's instruction set has
// registers for (-march picks it), and how many such registers there are, which the kernels' register tiles are
// sized by. A vector wider than the registers would be split by the compiler, and some operations on it (the selects
// of vmax / vmin) into scalar code: on an AVX2 machine, 64-byte vectors made the add layer 25x nn.Linear.
// Included by the kernel sources; build.py hashes this header with each of them.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace shiftadd {

#if defined(__AVX512F__)
inline constexpr int kVectorBytes = 64, kVectorRegisters = 32;
#elif defined(__AVX__)
inline constexpr int kVectorBytes = 32, kVectorRegisters = 16;
#elif defined(__aarch64__)
inline constexpr int kVectorBytes = 16, kVectorRegisters = 32;
#else
inline constexpr int kVectorBytes = 16, kVectorRegisters = 16;
#endif

// Register tiles: `wide` where there are 32 vector registers, else `narrow` (16).
inline constexpr int by_registers(int wide, int narrow) { return kVectorRegisters >= 32 ? wide : narrow; }

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(kVectorBytes)));
  static constexpr int lanes = kVectorBytes / sizeof(T);
};

// max(a, b) and min(a, b) as a > b ? a : b and a < b ? a : b (b where either is NaN), one instruction each on x86:
// GCC compiles some of those selects on vectors to a compare and a blend, two.
template <typename V>
inline V vmax(V a, V b) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<V, Vec<float>::type>) return (V)_mm512_max_ps((__m512)a, (__m512)b);
  if constexpr (std::is_same_v<V, Vec<double>::type>) return (V)_mm512_max_pd((__m512d)a, (__m512d)b);
#elif defined(__AVX__)
  if constexpr (std::is_same_v<V, Vec<float>::type>) return (V)_mm256_max_ps((__m256)a, (__m256)b);
  if constexpr (std::is_same_v<V, Vec<double>::type>) return (V)_mm256_max_pd((__m256d)a, (__m256d)b);
#elif defined(__SSE2__)
  if constexpr (std::is_same_v<V, Vec<float>::type>) return (V)_mm_max_ps((__m128)a, (__m128)b);
  if constexpr (std::is_same_v<V, Vec<double>::type>) return (V)_mm_max_pd((__m128d)a, (__m128d)b);
#endif
  return a > b ? a : b;
}
template <typename V>
inline V vmin(V a, V b) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<V, Vec<float>::type>) return (V)_mm512_min_ps((__m512)a, (__m512)b);
  if constexpr (std::is_same_v<V, Vec<double>::type>) return (V)_mm512_min_pd((__m512d)a, (__m512d)b);
#elif defined(__AVX__)
  if constexpr (std::is_same_v<V, Vec<float>::type>) return (V)_mm256_min_ps((__m256)a, (__m256)b);
  if constexpr (std::is_same_v<V, Vec<double>::type>) return (V)_mm256_min_pd((__m256d)a, (__m256d)b);
#elif defined(__SSE2__)
  if constexpr (std::is_same_v<V, Vec<float>::type>) return (V)_mm_min_ps((__m128)a, (__m128)b);
  if constexpr (std::is_same_v<V, Vec<double>::type>) return (V)_mm_min_pd((__m128d)a, (__m128d)b);
#endif
  return a < b ? a : b;
}

// a * b + c, rounded once on machines with fused multiply-add (x86 with FMA), else twice; the same at every call site.
// The compiler's own contraction of a * b + c (-ffp-contract=fast) is not: GCC 12 left one site of the AVX2 build
// unfused, and paths that must agree bit for bit (a mixer's forward and its decoding steps) differed by a rounding.
template <typename V>
inline V fmadd(V a, V b, V c) {
#if defined(__FMA__)
  if constexpr (std::is_floating_point_v<V>) return std::fma(a, b, c);
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<V, Vec<float>::type>) return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
  if constexpr (std::is_same_v<V, Vec<double>::type>) return (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#else
  if constexpr (std::is_same_v<V, Vec<float>::type>) return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
  if constexpr (std::is_same_v<V, Vec<double>::type>) return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#endif
#endif
  return a * b + c;
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
