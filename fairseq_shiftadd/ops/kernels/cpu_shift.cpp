// Shift layers on CPU (DeepShift, arXiv 1905.13298): the DeepShift-PS weight in one pass each way, and the
// linear layer of a power-of-two weight read as one byte per weight.
//
// Compiled at first use by cpu_shift.py (see build.py) and called through ctypes; plain C ABI.
//   weight (n elements): e <- clamp(e, lo, hi), s <- clamp(s, -1, 1) (the stored parameters, in place), then
//                        w = round(s) * 2**round(e)                     (round half to even, as torch.round)
//   exponent grad:       de = (g * w) * ln 2                            (the sign's gradient is g itself)
//   DeepShift-Q:         q = sign(w) * 2**clamp(round(log2|w|), lo, hi) (a zero stays +0, a NaN stays NaN)
//   packed linear:       y[n, m] = b[m] + sum_k x[n, k] * w[k, m],  w decoded from its code byte c[k, m]
// The first two give the same values, bit for bit, as the composed PyTorch operations they replace: the bounds
// are integers, so rounding the clamped exponent is the clamp of the rounded one, and 2**p of an integer p in
// [lo, hi] is built from its exponent bits, exactly.
//
// DeepShift-Q rounds in the log domain from the bits of w: with |w| = 2**(E - bias) * 1.M (E, M: its exponent and
// mantissa fields), round(log2|w|) = E - bias + [1.M >= sqrt 2], exactly: sqrt 2 is irrational, so no w lies on the
// boundary, and 1.M >= sqrt 2 exactly where M >= the mantissa of the least T >= sqrt 2 (the caller's `threshold`,
// cpu_shift.py). A zero or subnormal (E = 0) gets an exponent at most -126 before clamping, below every lo of a
// shift layer's 2..8 weight bits; an infinity gets hi.
//
// A code byte holds a float32's sign bit and its exponent field E (w = +-2**(E - 127), E in [1, 127]), 0 for a
// zero weight: read sign-extended as int32 and shifted left by 23 it is the float's bits once bit 30 is cleared
// (three instructions per vector of weights). The codes are stored in panels of output columns, each panel k-major and
// contiguous, so that a task streams through one panel's bytes in order (read k-major across the whole (K, M)
// matrix instead, each k of a panel fell on another 4 KiB page at M = 4096, and the kernel drew 3.5 GB/s). For each
// k it decodes the panel's weights once and adds them, times x[n, k] broadcast, into the sums of up to 6 rows of x
// held in registers. A decoding step's linear (a few rows) is limited by reading its weight, which the codes make
// 4x smaller than float32 (measured in benchmarks/ops.py, `ShiftLinear ... step`).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "simd.h"

namespace {

using shiftadd::by_registers;
using shiftadd::Lanes;
using shiftadd::load;
using shiftadd::store;
using shiftadd::Vec;
using shiftadd::vector_loop;

// Vectors of sums per row of the packed linear's micro-kernel: its 6 rows x SUM_VECS sums and SUM_VECS weights
// within the vector registers (32 with AVX-512: 4 vectors; 16 with AVX2: 2).
constexpr int SUM_VECS = by_registers(4, 2);

// 2**p for an integer-valued p whose power is a normal number of T (NaN stays NaN).
template <typename T>
inline T power_of_two(T p) {
  if (p != p) return p;
  using Bits = std::conditional_t<std::is_same_v<T, float>, uint32_t, uint64_t>;
  constexpr int mantissa = std::is_same_v<T, float> ? 23 : 52, bias = std::is_same_v<T, float> ? 127 : 1023;
  const Bits bits = static_cast<Bits>(static_cast<int64_t>(p) + bias) << mantissa;
  T value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

template <typename T>
void ps_weight(T* exponent, T* sign, T* weight, int64_t n, int64_t lo, int64_t hi, int threads) {
  const T low = static_cast<T>(lo), high = static_cast<T>(hi);
#pragma omp parallel for simd schedule(static) num_threads(threads) if (n >= (int64_t(1) << 18))
  for (int64_t i = 0; i < n; ++i) {
    T e = exponent[i], s = sign[i];  // clamped as torch.clamp_: a NaN stays NaN (a diverged weight stays visible)
    e = e < low ? low : (e > high ? high : e);
    s = s < T(-1) ? T(-1) : (s > T(1) ? T(1) : s);
    exponent[i] = e;
    sign[i] = s;
    weight[i] = std::nearbyint(s) * power_of_two(std::nearbyint(e));
  }
}

template <typename T>
void ps_exponent_grad(const T* grad, const T* weight, T* out, int64_t n, int threads) {
  const T ln2 = static_cast<T>(0.6931471805599453);  // the double ln 2, rounded to T (as a Python scalar is)
#pragma omp parallel for simd schedule(static) num_threads(threads) if (n >= (int64_t(1) << 18))
  for (int64_t i = 0; i < n; ++i) out[i] = (grad[i] * weight[i]) * ln2;
}

template <typename T>
void round_pow2(const T* w, T* out, int64_t n, int64_t lo, int64_t hi, int64_t threshold, int threads) {
  using Bits = std::conditional_t<std::is_same_v<T, float>, uint32_t, uint64_t>;
  using Int = std::conditional_t<std::is_same_v<T, float>, int32_t, int64_t>;
  constexpr int mantissa = std::is_same_v<T, float> ? 23 : 52;
  constexpr Bits sign_bit = Bits(1) << (8 * sizeof(T) - 1), infinity = ~sign_bit & ~((Bits(1) << mantissa) - 1);
  constexpr Int bias = std::is_same_v<T, float> ? 127 : 1023;
  const Int low = static_cast<Int>(lo), high = static_cast<Int>(hi);
  const Bits mantissa_threshold = static_cast<Bits>(threshold);
#pragma omp parallel for simd schedule(static) num_threads(threads) if (n >= (int64_t(1) << 18))
  for (int64_t i = 0; i < n; ++i) {
    Bits bits;
    std::memcpy(&bits, w + i, sizeof bits);
    const Bits magnitude = bits & ~sign_bit;
    Int p = static_cast<Int>(magnitude >> mantissa) - bias + ((magnitude & ~infinity) >= mantissa_threshold);
    p = p < low ? low : (p > high ? high : p);
    Bits q = (static_cast<Bits>(p + bias) << mantissa) | (bits & sign_bit);
    q = magnitude == 0 ? Bits(0) : (magnitude > infinity ? bits : q);
    std::memcpy(out + i, &q, sizeof q);
  }
}

// The weights of Lanes<T, NV> decoded from their code bytes at c (one scalar for NV = 0, else one vector).
template <typename T, int NV>
inline typename Lanes<T, NV>::U decode(const int8_t* c) {
  using U = typename Lanes<T, NV>::U;
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  using IV = std::conditional_t<NV == 0, I, typename Vec<I>::type>;
  IV v;
  if constexpr (NV == 0) {
    v = *c;
  } else {
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4) v = (IV)_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
    else v = (IV)_mm512_cvtepi8_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c)));
#elif defined(__AVX2__)
    if constexpr (sizeof(T) == 4) {
      v = (IV)_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c)));
    } else {
      int32_t four;
      std::memcpy(&four, c, sizeof four);
      v = (IV)_mm256_cvtepi8_epi64(_mm_cvtsi32_si128(four));
    }
#else
    for (int l = 0; l < Vec<T>::lanes; ++l) v[l] = c[l];
#endif
  }
  IV bits;
  if constexpr (sizeof(T) == 4) {
    bits = (v << 23) & I(0xBF800000u);  // a negative code sign-extends into bits 31 and 30; 30 is cleared
  } else {                              // double: E re-biased (1023 - 127), the sign to bit 63, zero kept zero
    const IV e = v & 0x7f;
    bits = ((e + (1023 - 127)) << 52) | ((v & 0x80) << 56);
    bits = e == 0 ? IV{} : bits;
  }
  U out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

// Rows [0, NR) of y = b + x w on the panel [m0, m0 + width) of output columns, whose codes are codes[k * ldc + j]
// for column m0 + j: SUM_VECS vectors of sums per row while k runs (then single vectors, then scalars, for a ragged
// end).
template <typename T, int NR>
void linear_rows(const T* x, int64_t ldx, const int8_t* codes, int64_t ldc, const T* bias, T* y, int64_t ldy,
                 int64_t K, int64_t m0, int64_t width) {
  vector_loop<T, SUM_VECS>(width, [&](auto vectors, int64_t i) {
    constexpr int NV = decltype(vectors)::value;
    using U = typename Lanes<T, NV>::U;
    constexpr int N = Lanes<T, NV>::N, W = Lanes<T, NV>::W;
    const int64_t m = m0 + i;
    U sum[NR][N];
    for (int v = 0; v < N; ++v) {
      const U b = bias ? load<U>(bias + m + v * W) : U{};
      for (int r = 0; r < NR; ++r) sum[r][v] = b;
    }
    for (int64_t k = 0; k < K; ++k) {
      U w[N];
      for (int v = 0; v < N; ++v) w[v] = decode<T, NV>(codes + k * ldc + i + v * W);
      for (int r = 0; r < NR; ++r) {
        const T xk = x[r * ldx + k];
        for (int v = 0; v < N; ++v) sum[r][v] += xk * w[v];
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int v = 0; v < N; ++v) store(y + r * ldy + m + v * W, sum[r][v]);
  });
}

template <int NR, typename T>
void linear_block(int64_t rows, const T* x, int64_t ldx, const int8_t* codes, int64_t ldc, const T* bias, T* y,
                  int64_t ldy, int64_t K, int64_t m0, int64_t width) {
  if constexpr (NR > 1) {
    if (rows < NR) return linear_block<NR - 1>(rows, x, ldx, codes, ldc, bias, y, ldy, K, m0, width);
  }
  linear_rows<T, NR>(x, ldx, codes, ldc, bias, y, ldy, K, m0, width);
}

// y (N, M) = b + x (N, K; row stride ldx) times the weight coded in panels of `panel` columns: the code of w[k, m]
// at codes[(m / panel) * panel_stride + k * panel + m % panel] (a front block of a larger weight's panels when K or
// M is smaller than theirs); bias may be null. The rows are cut into ceil(N / 6) blocks of near-equal size (8 rows:
// 4 + 4), each panel's codes read once per block; panels in parallel once the work pays for the threads.
template <typename T>
void pow2_linear(const T* x, const int8_t* codes, const T* bias, T* y, int64_t N, int64_t K, int64_t M, int64_t ldx,
                 int64_t panel, int64_t panel_stride, int threads) {
  constexpr int R = 6;
  const int64_t panels = (M + panel - 1) / panel, blocks = (N + R - 1) / R;
#pragma omp parallel for schedule(static) num_threads(threads) if (N * K * M >= (int64_t(1) << 21))
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t m0 = p * panel, width = std::min(panel, M - m0);
    for (int64_t block = 0, n = 0; block < blocks; ++block) {
      const int64_t rows = (N - n) / (blocks - block);
      linear_block<R>(rows, x + n * ldx, ldx, codes + p * panel_stride, panel, bias, y + n * M, M, K, m0, width);
      n += rows;
    }
  }
}

}  // namespace

extern "C" {
void shiftadd_ps_weight_float(float* e, float* s, float* w, int64_t n, int64_t lo, int64_t hi, int threads) {
  ps_weight<float>(e, s, w, n, lo, hi, threads);
}
void shiftadd_ps_weight_double(double* e, double* s, double* w, int64_t n, int64_t lo, int64_t hi, int threads) {
  ps_weight<double>(e, s, w, n, lo, hi, threads);
}
void shiftadd_ps_exponent_grad_float(const float* g, const float* w, float* out, int64_t n, int threads) {
  ps_exponent_grad<float>(g, w, out, n, threads);
}
void shiftadd_ps_exponent_grad_double(const double* g, const double* w, double* out, int64_t n, int threads) {
  ps_exponent_grad<double>(g, w, out, n, threads);
}
void shiftadd_round_pow2_float(const float* w, float* out, int64_t n, int64_t lo, int64_t hi, int64_t threshold,
                               int threads) {
  round_pow2<float>(w, out, n, lo, hi, threshold, threads);
}
void shiftadd_round_pow2_double(const double* w, double* out, int64_t n, int64_t lo, int64_t hi, int64_t threshold,
                                int threads) {
  round_pow2<double>(w, out, n, lo, hi, threshold, threads);
}
void shiftadd_pow2_linear_float(const float* x, const int8_t* codes, const float* bias, float* y, int64_t n, int64_t k,
                                int64_t m, int64_t ldx, int64_t panel, int64_t panel_stride, int threads) {
  pow2_linear<float>(x, codes, bias, y, n, k, m, ldx, panel, panel_stride, threads);
}
void shiftadd_pow2_linear_double(const double* x, const int8_t* codes, const double* bias, double* y, int64_t n,
                                 int64_t k, int64_t m, int64_t ldx, int64_t panel, int64_t panel_stride, int threads) {
  pow2_linear<double>(x, codes, bias, y, n, k, m, ldx, panel, panel_stride, threads);
}
}
