// The DeepShift-PS weight on CPU, in one pass each way (DeepShift, arXiv 1905.13298).
//
// Compiled at first use by cpu_shift.py (see build.py) and called through ctypes; plain C ABI. Over n elements:
//   weight:          e <- clamp(e, lo, hi), s <- clamp(s, -1, 1) (the stored parameters, in place), then
//                    w = round(s) * 2**round(e)                     (round half to even, as torch.round)
//   exponent grad:   de = (g * w) * ln 2                            (the sign's gradient is g itself)
// The same values, bit for bit, as the composed PyTorch operations they replace: the bounds are integers, so
// rounding the clamped exponent is the clamp of the rounded one, and 2**p of an integer p in [lo, hi] is built
// from its exponent bits, exactly.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace {

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
}
