// Direct depthwise adder convolution on CPU (AdderNet, arXiv 1912.13200): no unfolded patches.
//
// Compiled at first use by cpu_depthwise.py (see build.py) and called through ctypes; plain C ABI.
// Input xp (B, C, Hp, Wp) is already zero-padded (padded zeros take part in the distance); channel c reads
// the weight plane w[c] (kh, kw). With o = (i * sh + u * dh, j * sw + v * dw):
//   forward:        y[b, c, i, j]   = -sum_{u, v} |xp[b, c, o] - w[c, u, v]|
//   input gradient: dxp[b, c, o]   += g[b, c, i, j] * clamp(w[c, u, v] - xp[b, c, o], -1, 1)   (summed over i, j, u, v)
//   weight product: p[c, u, v]      = sum_{b, i, j} g[b, c, i, j] * xp[b, c, o]                (the g^T x of dw)
// The innermost loop runs along j (contiguous for stride 1), one (b, c) plane (or one channel) per task; with
// unit strides (the *_flat variants) along the whole plane, in vectors whose sums stay in registers while the taps
// run (vector_loop).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "simd.h"

namespace {

using shiftadd::broadcast;
using shiftadd::load;
using shiftadd::vabs;
using shiftadd::store;
using shiftadd::Vec;
using shiftadd::vector_loop;
using shiftadd::vmax;
using shiftadd::vmin;

struct Geometry {
  int64_t batch, channels, hp, wp, ho, wo, kh, kw, sh, sw, dh, dw;
};

// Flat offset of each tap (u, v) on the input's pitch: u * dh * wp + v * dw (unit strides).
std::vector<int64_t> tap_offsets(const Geometry& s) {
  std::vector<int64_t> offset(s.kh * s.kw);
  for (int64_t u = 0; u < s.kh; ++u)
    for (int64_t v = 0; v < s.kw; ++v) offset[u * s.kw + v] = u * s.dh * s.wp + v * s.dw;
  return offset;
}

// UNIT: column stride 1, known at compile time (contiguous vector loads and stores along j).
template <typename T, bool UNIT>
void forward(const T* xp, const T* w, T* y, const Geometry& s, int threads) {
  const int64_t sw = UNIT ? 1 : s.sw;
  const int64_t planes = s.batch * s.channels;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* x = xp + plane * s.hp * s.wp;
    const T* wc = w + (plane % s.channels) * s.kh * s.kw;
    T* out = y + plane * s.ho * s.wo;
    for (int64_t i = 0; i < s.ho; ++i) {
      T* row = out + i * s.wo;
      std::fill(row, row + s.wo, T(0));
      for (int64_t u = 0; u < s.kh; ++u) {
        const T* xr = x + (i * s.sh + u * s.dh) * s.wp;
        for (int64_t v = 0; v < s.kw; ++v) {
          const T wv = wc[u * s.kw + v];
          const T* xv = xr + v * s.dw;
#pragma omp simd
          for (int64_t j = 0; j < s.wo; ++j) {
            const T d = xv[j * sw] - wv;
            row[j] -= vabs(d);
          }
        }
      }
    }
  }
}

template <typename T, bool UNIT>
void input_grad(const T* g, const T* xp, const T* w, T* dxp, const Geometry& s, int threads) {
  const int64_t sw = UNIT ? 1 : s.sw;
  const int64_t planes = s.batch * s.channels;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* x = xp + plane * s.hp * s.wp;
    const T* wc = w + (plane % s.channels) * s.kh * s.kw;
    const T* gp = g + plane * s.ho * s.wo;
    T* dx = dxp + plane * s.hp * s.wp;
    std::fill(dx, dx + s.hp * s.wp, T(0));
    for (int64_t i = 0; i < s.ho; ++i) {
      const T* gr = gp + i * s.wo;
      for (int64_t u = 0; u < s.kh; ++u) {
        const int64_t offset = (i * s.sh + u * s.dh) * s.wp;
        for (int64_t v = 0; v < s.kw; ++v) {
          const T wv = wc[u * s.kw + v];
          const T* xv = x + offset + v * s.dw;
          T* dv = dx + offset + v * s.dw;
#pragma omp simd
          for (int64_t j = 0; j < s.wo; ++j) {
            const T d = wv - xv[j * sw];
            dv[j * sw] += gr[j] * std::min(std::max(d, T(-1)), T(1));
          }
        }
      }
    }
  }
}

template <typename T, bool UNIT>
void weight_product(const T* g, const T* xp, T* p, const Geometry& s, int threads) {
  const int64_t sw = UNIT ? 1 : s.sw;
  const int64_t taps = s.kh * s.kw;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t c = 0; c < s.channels; ++c) {
    std::vector<T> sums(taps * s.wo, T(0));  // per tap, per output column: one horizontal sum at the end
    for (int64_t b = 0; b < s.batch; ++b) {
      const int64_t plane = b * s.channels + c;
      const T* x = xp + plane * s.hp * s.wp;
      const T* gp = g + plane * s.ho * s.wo;
      for (int64_t i = 0; i < s.ho; ++i) {
        const T* gr = gp + i * s.wo;
        for (int64_t u = 0; u < s.kh; ++u) {
          const T* xr = x + (i * s.sh + u * s.dh) * s.wp;
          for (int64_t v = 0; v < s.kw; ++v) {
            const T* xv = xr + v * s.dw;
            T* sum = sums.data() + (u * s.kw + v) * s.wo;
#pragma omp simd
            for (int64_t j = 0; j < s.wo; ++j) sum[j] += gr[j] * xv[j * sw];
          }
        }
      }
    }
    for (int64_t tap = 0; tap < taps; ++tap) {
      T total = T(0);
      for (int64_t j = 0; j < s.wo; ++j) total += sums[tap * s.wo + j];
      p[c * taps + tap] = total;
    }
  }
}

// Unit strides: each plane as one flat vector on the input's row pitch wp. Output position f = i * wp + j
// reads xp[f + u * dh * wp + v * dw]; columns j >= wo of that grid are junk (computed, then dropped, or given
// a zero gradient), and the last valid f keeps every read inside the plane. Per block of positions, every tap.
template <typename T>
void forward_flat(const T* xp, const T* w, T* y, const Geometry& s, int threads) {
  using V = typename Vec<T>::type;
  const int64_t planes = s.batch * s.channels, span = (s.ho - 1) * s.wp + s.wo, taps = s.kh * s.kw;
  const std::vector<int64_t> offset = tap_offsets(s);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* x = xp + plane * s.hp * s.wp;
    const T* wc = w + (plane % s.channels) * taps;
    std::vector<T> grid(span);
    T* acc = grid.data();
    vector_loop<T>(span, [&](auto vectors, int64_t f) {
      constexpr int NV = decltype(vectors)::value;
      if constexpr (NV == 0) {
        T sum = T(0);
        for (int64_t t = 0; t < taps; ++t) {
          const T d = x[offset[t] + f] - wc[t];
          sum -= vabs(d);
        }
        acc[f] = sum;
      } else {
        constexpr int L = Vec<T>::lanes;
        V sum[NV];
        for (int j = 0; j < NV; ++j) sum[j] = V{};
        for (int64_t t = 0; t < taps; ++t) {
          const V wv = broadcast<V>(wc[t]);
          for (int j = 0; j < NV; ++j) {
            const V d = load<V>(x + offset[t] + f + j * L) - wv;
            sum[j] -= vabs(d);
          }
        }
        for (int j = 0; j < NV; ++j) store(acc + f + j * L, sum[j]);
      }
    });
    T* out = y + plane * s.ho * s.wo;
    for (int64_t i = 0; i < s.ho; ++i) std::copy(acc + i * s.wp, acc + i * s.wp + s.wo, out + i * s.wo);
  }
}

template <typename T>
void to_grid(const T* g, T* grid, const Geometry& s) {  // (ho, wo) -> (ho, wp) pitch, zero junk columns
  std::fill(grid, grid + s.ho * s.wp, T(0));
  for (int64_t i = 0; i < s.ho; ++i) std::copy(g + i * s.wo, g + (i + 1) * s.wo, grid + i * s.wp);
}

// The input gradient gathered per input position q (flat on the pitch wp): each output that reads q sits at
// q - offset[t] on the gradient's grid, so dxp[q] = sum_t gg[q - offset[t]] * clamp(w[t] - xp[q], -1, 1), with gg
// zero before the grid, past it and on its junk columns. One store per position, x held in registers while the
// taps run.
template <typename T>
void input_grad_flat(const T* g, const T* xp, const T* w, T* dxp, const Geometry& s, int threads) {
  using V = typename Vec<T>::type;
  const int64_t planes = s.batch * s.channels, size = s.hp * s.wp, taps = s.kh * s.kw;
  const int64_t reach = (s.kh - 1) * s.dh * s.wp + (s.kw - 1) * s.dw;
  const std::vector<int64_t> offset = tap_offsets(s);
  const V one = broadcast<V>(T(1)), minus_one = broadcast<V>(T(-1));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* x = xp + plane * size;
    const T* wc = w + (plane % s.channels) * taps;
    std::vector<T> grid(reach + size, T(0));
    T* gg = grid.data() + reach;
    for (int64_t i = 0; i < s.ho; ++i) std::copy(g + (plane * s.ho + i) * s.wo, g + (plane * s.ho + i + 1) * s.wo,
                                                 gg + i * s.wp);
    T* dx = dxp + plane * size;
    vector_loop<T>(size, [&](auto vectors, int64_t q) {
      constexpr int NV = decltype(vectors)::value;
      if constexpr (NV == 0) {
        T acc = T(0);
        for (int64_t t = 0; t < taps; ++t) acc += gg[q - offset[t]] * std::min(std::max(wc[t] - x[q], T(-1)), T(1));
        dx[q] = acc;
      } else {
        constexpr int L = Vec<T>::lanes;
        V xv[NV], acc[NV];
        for (int j = 0; j < NV; ++j) {
          xv[j] = load<V>(x + q + j * L);
          acc[j] = V{};
        }
        for (int64_t t = 0; t < taps; ++t) {
          const V wv = broadcast<V>(wc[t]);
          const T* gt = gg + q - offset[t];
          for (int j = 0; j < NV; ++j) acc[j] += load<V>(gt + j * L) * vmin(vmax(wv - xv[j], minus_one), one);
        }
        for (int j = 0; j < NV; ++j) store(dx + q + j * L, acc[j]);
      }
    });
  }
}

// p[c, t] = sum_{b, f} gg[f] * xp[b, c, f + offset[t]] over the gradient's grid f (junk columns zero): per grid
// vector, one load of g and one fma per tap into that tap's vector sum.
template <typename T>
void weight_product_flat(const T* g, const T* xp, T* p, const Geometry& s, int threads) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const int64_t taps = s.kh * s.kw, span = (s.ho - 1) * s.wp + s.wo;
  const std::vector<int64_t> offset = tap_offsets(s);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t c = 0; c < s.channels; ++c) {
    std::vector<T> grid(s.ho * s.wp), tails(taps, T(0));
    std::vector<V> sums(taps, V{});
    for (int64_t b = 0; b < s.batch; ++b) {
      const int64_t plane = b * s.channels + c;
      const T* x = xp + plane * s.hp * s.wp;
      to_grid(g + plane * s.ho * s.wo, grid.data(), s);
      const T* gg = grid.data();
      vector_loop<T, 1>(span, [&](auto vectors, int64_t f) {
        if constexpr (decltype(vectors)::value == 0) {
          for (int64_t t = 0; t < taps; ++t) tails[t] += gg[f] * x[offset[t] + f];
        } else {
          const V gv = load<V>(gg + f);
          for (int64_t t = 0; t < taps; ++t) sums[t] += gv * load<V>(x + offset[t] + f);
        }
      });
    }
    for (int64_t t = 0; t < taps; ++t) {
      T total = tails[t];
      for (int lane = 0; lane < L; ++lane) total += sums[t][lane];
      p[c * taps + t] = total;
    }
  }
}

}  // namespace

#define SHIFTADD_GEOMETRY_ARGS                                                                                   \
  int64_t batch, int64_t channels, int64_t hp, int64_t wp, int64_t ho, int64_t wo, int64_t kh, int64_t kw,       \
      int64_t sh, int64_t sw, int64_t dh, int64_t dw, int threads
#define SHIFTADD_GEOMETRY Geometry{batch, channels, hp, wp, ho, wo, kh, kw, sh, sw, dh, dw}

// Unit strides take the flat kernels; otherwise the row loops, with unit column strides known at compile time.
#define SHIFTADD_DEPTHWISE_FUNCTIONS(T)                                                                         \
  void shiftadd_depthwise_forward_##T(const T* xp, const T* w, T* y, SHIFTADD_GEOMETRY_ARGS) {                 \
    if (sh == 1 && sw == 1) forward_flat<T>(xp, w, y, SHIFTADD_GEOMETRY, threads);                            \
    else if (sw == 1) forward<T, true>(xp, w, y, SHIFTADD_GEOMETRY, threads);                                 \
    else forward<T, false>(xp, w, y, SHIFTADD_GEOMETRY, threads);                                             \
  }                                                                                                             \
  void shiftadd_depthwise_input_grad_##T(const T* g, const T* xp, const T* w, T* dxp, SHIFTADD_GEOMETRY_ARGS) { \
    if (sh == 1 && sw == 1) input_grad_flat<T>(g, xp, w, dxp, SHIFTADD_GEOMETRY, threads);                    \
    else if (sw == 1) input_grad<T, true>(g, xp, w, dxp, SHIFTADD_GEOMETRY, threads);                         \
    else input_grad<T, false>(g, xp, w, dxp, SHIFTADD_GEOMETRY, threads);                                     \
  }                                                                                                             \
  void shiftadd_depthwise_weight_product_##T(const T* g, const T* xp, T* p, SHIFTADD_GEOMETRY_ARGS) {          \
    if (sh == 1 && sw == 1) weight_product_flat<T>(g, xp, p, SHIFTADD_GEOMETRY, threads);                     \
    else if (sw == 1) weight_product<T, true>(g, xp, p, SHIFTADD_GEOMETRY, threads);                          \
    else weight_product<T, false>(g, xp, p, SHIFTADD_GEOMETRY, threads);                                      \
  }

extern "C" {
SHIFTADD_DEPTHWISE_FUNCTIONS(float)
SHIFTADD_DEPTHWISE_FUNCTIONS(double)
}
