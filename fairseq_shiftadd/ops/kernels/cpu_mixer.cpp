// The lightweight add mixer on CPU, on the model's time-major layout (AdderNet negative L1 over time): no padded
// copy, no transposes.
//
// Compiled at first use by cpu_mixer.py (see build.py) and called through ctypes; plain C ABI. x is (T, B, C), the
// kernel (H, K) is read expanded per channel as w (K, C) (w[j, c] = kernel[c / (C / H), j], built per call), and
// positions outside [0, T) read zeros (the zero padding: `left` positions before the sequence, the rest after it):
//   forward:        y[t, b, c]  = -sum_j |x[t + j - left, b, c] - w[j, c]|
//   input gradient: dx[s, b, c] =  sum_j g[s - j + left, b, c] * clamp(w[j, c] - x[s, b, c], -1, 1)
//   weight product: p[j, c]     =  sum_{t, b} g[t, b, c] * x[t + j - left, b, c]             (the g^T x of dw)
//   decoding step:  y[b, c]     = -sum_j |window[j, b, c] - w[j, c]|      (window: the last K inputs, (K, B, C))
//                   or, for the product mixer,  sum_j window[j, b, c] * w[j, c]
// Vectorised along c. Each task first copies the rows it reads, one batch entry's slice of channels over time
// with the zero borders, into a small buffer of its own: in (T, B, C) consecutive times are B * C apart, a stride
// at which the taps of one output all fall into the same cache sets. The forward and the input gradient take one
// batch entry and 4 vectors of channels per task and compute 8 rows at a time (4 in sequences shorter than 16), one
// vector of channels wide: the rows' inputs slide through registers tap by tap, so a tap costs two loads for 8 terms
// (1.2-1.5x faster than one row at a time, measured). The weight product takes one vector of channels per task, 8
// taps' sums in registers while time runs and their inputs sliding through registers likewise (0.72-0.75 ms against
// 0.91-0.94 ms with 4 taps read from memory at T32 B32 C512 K31, one thread). The input gradient and the weight
// product skip what meets only the zero padding (taps whose gradients, rows of time whose inputs, are all padding:
// 8-18 % of their time at T = 32 and 16 with K = 31), and the forward subtracts |w| alone at the taps where a
// block's rows all read padding (its terms there), adding the same terms in the same order: at T = 8, where K = 15
// or 31 puts half the terms or more in the padding, the forward took 0.37-0.38 ms against 0.42 (K = 15) and
// 0.62-0.65 against 0.75-0.77 (K = 31), the input gradient 0.44 against 0.59-0.60 and 0.47-0.48 against 0.63-0.64
// (B 128, C 512, one thread, two runs with the library before loaded beside it, the same outputs bit for bit). The
// gathers copy whole vectors by register, not by a library call per row: at T = 8 a task's rows are few and short,
// and the weight product took 0.39-0.41 ms against 0.47-0.50 (K = 15) and 0.51-0.53 against 0.63-0.74 (K = 31);
// 0.48-0.50 against 0.55-0.57 at T = 32, K = 31 (three runs likewise). A decoding step reads its window in place
// (each row once), head by head with the head's kernel value broadcast (no per-channel expansion per step), on one
// thread unless the window is large.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "simd.h"

namespace {

using shiftadd::Lanes;
using shiftadd::load;
using shiftadd::vabs;
using shiftadd::store;
using shiftadd::Vec;
using shiftadd::vector_loop;
using shiftadd::vmax;
using shiftadd::vmin;

struct Sequence {
  int64_t length, batch, channels, taps, left, heads;
  // The taps at which some input-gradient row s in [s0, s1) meets g[s - j + left] inside [0, T): [first, end) (the
  // others meet the zero padding only, so their terms are zeros).
  int64_t gradient_first(int64_t s0) const { return std::max<int64_t>(0, s0 + left - length + 1); }
  int64_t gradient_end(int64_t s1) const { return std::min<int64_t>(taps, s1 + left); }
};

// The kernel (H, K) per channel, as the loops read it: w[j, c] = kernel[c / (C / H), j], (K, C).
template <typename T>
std::vector<T> per_channel(const T* kernel, const Sequence& s) {
  std::vector<T> w(s.taps * s.channels);
  const int64_t width = s.channels / s.heads;
  for (int64_t j = 0; j < s.taps; ++j)
    for (int64_t h = 0; h < s.heads; ++h)
      std::fill_n(w.data() + j * s.channels + h * width, width, kernel[h * s.taps + j]);
  return w;
}

// buf[u, :] = base[first + u, b, c0 : c0 + width] for u in [0, rows), zeros where first + u is outside [0, T).
template <typename T>
void gather(const T* base, int64_t b, int64_t c0, int64_t width, int64_t first, int64_t rows, const Sequence& s,
            T* buf) {
  using U = typename Vec<T>::type;
  constexpr int64_t lanes = Vec<T>::lanes;
  const bool vectors = width % lanes == 0;  // whole vectors (every slice but a ragged last one): no call per row
  for (int64_t u = 0; u < rows; ++u) {
    const int64_t t = first + u;
    T* to = buf + u * width;
    if (t < 0 || t >= s.length) {
      if (vectors) for (int64_t v = 0; v < width; v += lanes) store(to + v, U{});
      else std::fill_n(to, width, T(0));
      continue;
    }
    const T* from = base + (t * s.batch + b) * s.channels + c0;
    if (vectors) for (int64_t v = 0; v < width; v += lanes) store(to + v, load<U>(from + v));
    else std::copy_n(from, width, to);
  }
}

// Runs task(b, c0, width, buf) for every batch entry b and slice [c0, c0 + width) of at most 4 vectors of channels,
// in parallel, buf holding T + K - 1 rows of the slice for the task to gather into.
template <typename T, typename Task>
void for_each_slice(const Sequence& s, int threads, Task&& task) {
  constexpr int64_t slice = 4 * Vec<T>::lanes;
  const int64_t slices = (s.channels + slice - 1) / slice;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> buf((s.length + s.taps - 1) * slice);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < s.batch * slices; ++i) {
      const int64_t b = i / slices, c0 = (i % slices) * slice;
      task(b, c0, std::min(slice, s.channels - c0), buf.data());
    }
  }
}

// Runs rows(std::integral_constant<int, R>{}, Lanes<T, NV>{}, t, c) over a slice's channels, one vector (NV = 1)
// or, for the last ones, one scalar (NV = 0) at a time, and over its rows t in blocks of R = 8 (sequences of 16 or
// more), then of 4, then single rows. A short sequence takes blocks of 4: a block's taps that meet the padding in
// every row are cheaper (forward) or skipped (input gradient), and with K >= T few taps do for all 8 rows.
template <typename T, typename Rows>
void in_row_blocks(int64_t length, int64_t width, Rows&& rows) {
  vector_loop<T, 1>(width, [&](auto vectors, int64_t c) {
    const Lanes<T, decltype(vectors)::value> lanes;
    int64_t t = 0;
    if (length >= 16)
      for (; t + 8 <= length; t += 8) rows(std::integral_constant<int, 8>{}, lanes, t, c);
    for (; t + 4 <= length; t += 4) rows(std::integral_constant<int, 4>{}, lanes, t, c);
    for (; t < length; ++t) rows(std::integral_constant<int, 1>{}, lanes, t, c);
  });
}

// Rows t .. t + R - 1 of the output on one U of channels (at c in the slice): the rows' inputs slide through
// registers one tap at a time, so that a tap costs two loads (its input row and its kernel row) for R terms. The taps
// at which every row of the block reads the zero padding, [0, j0) and [j1, K), subtract |w| itself, computed once
// for the R rows: the same value as |0 - w|, in the same order.
template <int R, typename U, typename T>
inline void forward_rows(const T* xb, const T* w, T* y, int64_t t, int64_t b, int64_t c0, int64_t c, int64_t width,
                         const Sequence& s) {
  const int64_t j0 = std::clamp<int64_t>(s.left - t - (R - 1), 0, s.taps);
  const int64_t j1 = std::clamp<int64_t>(s.left + s.length - t, j0, s.taps);
  U xr[R], sum[R];
  for (int r = 0; r < R; ++r) {
    xr[r] = load<U>(xb + (t + r + j0) * width + c);
    sum[r] = U{};
  }
  for (int64_t j = 0; j < s.taps; ++j) {
    const U wv = load<U>(w + j * s.channels + c0 + c);
    if (j < j0 || j >= j1) {
      const U magnitude = vabs(wv);
      for (int r = 0; r < R; ++r) sum[r] -= magnitude;
      continue;
    }
    for (int r = 0; r < R; ++r) sum[r] -= vabs(xr[r] - wv);
    for (int r = 0; r + 1 < R; ++r) xr[r] = xr[r + 1];
    if (j + 1 < j1) xr[R - 1] = load<U>(xb + (t + j + R) * width + c);  // x[t + (R - 1) + (j + 1) - left]
  }
  for (int r = 0; r < R; ++r) store(y + ((t + r) * s.batch + b) * s.channels + c0 + c, sum[r]);
}

template <typename T>
void forward(const T* x, const T* w, T* y, const Sequence& s, int threads) {
  for_each_slice<T>(s, threads, [&](int64_t b, int64_t c0, int64_t width, T* xb) {
    gather(x, b, c0, width, -s.left, s.length + s.taps - 1, s, xb);  // xb[u] = x[u - left]
    in_row_blocks<T>(s.length, width, [&](auto block, auto lanes, int64_t t, int64_t c) {
      forward_rows<decltype(block)::value, typename decltype(lanes)::U>(xb, w, y, t, b, c0, c, width, s);
    });
  });
}

// Rows t .. t + R - 1 of the input gradient on one U of channels (at c in the slice): the rows' inputs stay in
// registers and their output gradients slide through registers one tap at a time (up the window as the taps run
// down it), so that a tap costs two loads (its gradient row and its kernel row) for R terms.
template <int R, typename U, typename T>
inline void input_grad_rows(const T* gb, const T* x, const T* w, T* dx, int64_t t, int64_t b, int64_t c0, int64_t c,
                            int64_t width, const Sequence& s) {
  const U one = T(1) - U{}, minus_one = T(-1) - U{};
  const int64_t first = s.gradient_first(t), end = s.gradient_end(t + R);  // other taps meet zero gradients only
  U xv[R], gr[R], sum[R];
  for (int r = 0; r < R; ++r) {
    xv[r] = load<U>(x + ((t + r) * s.batch + b) * s.channels + c0 + c);
    gr[r] = load<U>(gb + (t + r + s.taps - 1 - first) * width + c);  // g[t + r - j + left] at j = first
    sum[r] = U{};
  }
  for (int64_t j = first; j < end; ++j) {
    const U wv = load<U>(w + j * s.channels + c0 + c);
    for (int r = 0; r < R; ++r) sum[r] += gr[r] * vmin(vmax(wv - xv[r], minus_one), one);
    for (int r = R - 1; r > 0; --r) gr[r] = gr[r - 1];
    if (j + 1 < end) gr[0] = load<U>(gb + (t + s.taps - 2 - j) * width + c);
  }
  for (int r = 0; r < R; ++r) store(dx + ((t + r) * s.batch + b) * s.channels + c0 + c, sum[r]);
}

template <typename T>
void input_grad(const T* g, const T* x, const T* w, T* dx, const Sequence& s, int threads) {
  const int64_t after = s.taps - 1 - s.left;
  for_each_slice<T>(s, threads, [&](int64_t b, int64_t c0, int64_t width, T* gb) {
    gather(g, b, c0, width, -after, s.length + s.taps - 1, s, gb);  // gb[u] = g[u - after]
    in_row_blocks<T>(s.length, width, [&](auto block, auto lanes, int64_t t, int64_t c) {
      input_grad_rows<decltype(block)::value, typename decltype(lanes)::U>(gb, x, w, dx, t, b, c0, c, width, s);
    });
  });
}

// p[j0 + i, c0 + c ...] += sum_t gb[t] * xb[t + j0 + i] for i < J, on the lanes of one vector_loop step: the J
// inputs a gradient row meets slide through registers as t runs, so a row of time costs two loads for J terms.
template <int J, typename U, typename T>
void product_taps(const T* gb, const T* xb, T* p, int64_t j0, int64_t c, int64_t width, const Sequence& s) {
  // rows of time at which one of the J taps reads x inside [0, T) (elsewhere every term is g * 0)
  const int64_t first = std::max<int64_t>(0, s.left - j0 - J + 1), end = std::min(s.length, s.length + s.left - j0);
  U sum[J], xr[J];
  for (int i = 0; i < J; ++i) {
    sum[i] = U{};
    xr[i] = load<U>(xb + (first + j0 + i) * width + c);  // xb[t + j0 + i] at t = first
  }
  for (int64_t t = first; t < end; ++t) {
    const U gv = load<U>(gb + t * width + c);
    for (int i = 0; i < J; ++i) sum[i] += gv * xr[i];
    for (int i = 0; i + 1 < J; ++i) xr[i] = xr[i + 1];
    if (t + 1 < end) xr[J - 1] = load<U>(xb + (t + j0 + J) * width + c);
  }
  for (int i = 0; i < J; ++i) store(p + (j0 + i) * width + c, load<U>(p + (j0 + i) * width + c) + sum[i]);
}

template <typename T>
void weight_product(const T* g, const T* x, T* p, const Sequence& s, int threads) {
  constexpr int64_t slice = Vec<T>::lanes;
  const int64_t slices = (s.channels + slice - 1) / slice;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> xb((s.length + s.taps - 1) * slice), gb(s.length * slice), sums(s.taps * slice);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < slices; ++i) {
      const int64_t c0 = i * slice, width = std::min(slice, s.channels - c0);
      std::fill(sums.begin(), sums.end(), T(0));  // sums[j, c] = p[j, c0 + c]
      for (int64_t b = 0; b < s.batch; ++b) {
        gather(x, b, c0, width, -s.left, s.length + s.taps - 1, s, xb.data());
        gather(g, b, c0, width, 0, s.length, s, gb.data());
        vector_loop<T, 1>(width, [&](auto vectors, int64_t c) {
          using U = typename Lanes<T, decltype(vectors)::value>::U;
          int64_t j = 0;
          for (; j + 8 <= s.taps; j += 8) product_taps<8, U>(gb.data(), xb.data(), sums.data(), j, c, width, s);
          for (; j + 4 <= s.taps; j += 4) product_taps<4, U>(gb.data(), xb.data(), sums.data(), j, c, width, s);
          for (; j < s.taps; ++j) product_taps<1, U>(gb.data(), xb.data(), sums.data(), j, c, width, s);
        });
      }
      for (int64_t j = 0; j < s.taps; ++j) std::copy_n(sums.data() + j * width, width, p + j * s.channels + c0);
    }
  }
}

template <typename T, bool Product>
void window_forward(const T* window, const T* kernel, T* y, const Sequence& s, int threads) {
  const int64_t pitch = s.batch * s.channels, width = s.channels / s.heads;
#pragma omp parallel for schedule(static) num_threads(threads) if (pitch * s.taps >= (int64_t(1) << 20))
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {  // a head's channels share its kernel row: broadcast, not expanded
      const T* row = kernel + h * s.taps;
      const int64_t first = b * s.channels + h * width;
      vector_loop<T>(width, [&](auto vectors, int64_t c) {
        using B = Lanes<T, decltype(vectors)::value>;
        using U = typename B::U;
        [[maybe_unused]] const U minus_one = T(-1) - U{};
        U sum[B::N];
        for (int n = 0; n < B::N; ++n) sum[n] = U{};
        for (int64_t j = 0; j < s.taps; ++j) {
          const T* xj = window + j * pitch + first + c;
          const U wj = row[j] - U{};
          for (int n = 0; n < B::N; ++n) {
            if constexpr (Product) {
              sum[n] += load<U>(xj + n * B::W) * wj;
            } else {
              sum[n] += vabs(load<U>(xj + n * B::W) - wj) * minus_one;
            }
          }
        }
        for (int n = 0; n < B::N; ++n) store(y + first + c + n * B::W, sum[n]);
      });
    }
  }
}

}  // namespace

#define SHIFTADD_SEQUENCE_ARGS \
  int64_t length, int64_t batch, int64_t channels, int64_t taps, int64_t left, int64_t heads, int threads
#define SHIFTADD_SEQUENCE Sequence{length, batch, channels, taps, left, heads}
#define SHIFTADD_MIXER_FUNCTIONS(T)                                                                             \
  void shiftadd_mixer_forward_##T(const T* x, const T* kernel, T* y, SHIFTADD_SEQUENCE_ARGS) {                 \
    const Sequence s = SHIFTADD_SEQUENCE;                                                                       \
    forward<T>(x, per_channel(kernel, s).data(), y, s, threads);                                                \
  }                                                                                                             \
  void shiftadd_mixer_input_grad_##T(const T* g, const T* x, const T* kernel, T* dx, SHIFTADD_SEQUENCE_ARGS) { \
    const Sequence s = SHIFTADD_SEQUENCE;                                                                       \
    input_grad<T>(g, x, per_channel(kernel, s).data(), dx, s, threads);                                         \
  }                                                                                                             \
  void shiftadd_mixer_weight_product_##T(const T* g, const T* x, T* p, SHIFTADD_SEQUENCE_ARGS) {               \
    weight_product<T>(g, x, p, SHIFTADD_SEQUENCE, threads);                                                     \
  }                                                                                                             \
  void shiftadd_mixer_window_##T(const T* window, const T* kernel, T* y, SHIFTADD_SEQUENCE_ARGS) {             \
    window_forward<T, false>(window, kernel, y, SHIFTADD_SEQUENCE, threads);                                    \
  }                                                                                                             \
  void shiftadd_mixer_window_product_##T(const T* window, const T* kernel, T* y, SHIFTADD_SEQUENCE_ARGS) {     \
    window_forward<T, true>(window, kernel, y, SHIFTADD_SEQUENCE, threads);                                     \
  }

extern "C" {
SHIFTADD_MIXER_FUNCTIONS(float)
SHIFTADD_MIXER_FUNCTIONS(double)
}
