// The lightweight add and conv mixers on CPU, on the model's time-major layout (AdderNet negative L1 over time, or a
// product): no padded copy, no transposes.
//
// Compiled at first use by cpu_mixer.py (see build.py) and called through ctypes; plain C ABI. x is (T, B, C), the
// kernel (H, K) is read expanded per channel as w (K, C) (w[j, c] = kernel[c / (C / H), j], built per call), and
// positions outside [0, T) read zeros (the zero padding: `left` positions before the sequence, the rest after it):
//   forward:        y[t, b, c]  = -sum_j |x[t + j - left, b, c] - w[j, c]|
//                   or, for the product mixer,  sum_j x[t + j - left, b, c] * w[j, c]   (its input gradient: this
//                   forward of g with the kernel reversed and K - 1 - left zeros before, cpu_mixer.py)
//   input gradient: dx[s, b, c] =  sum_j g[s - j + left, b, c] * clamp(w[j, c] - x[s, b, c], -1, 1)
//   weight product: p[j, c]     =  sum_{t, b} g[t, b, c] * x[t + j - left, b, c]             (the g^T x of dw)
//                   and, where asked for, gs[c] = sum_{t, b} g[t, b, c] (the add mixer's dw needs it: one pass less)
//   decoding step:  y[b, c]     = -sum_j |window[j, b, c] - w[j, c]|      (window: the last K inputs, (K, B, C))
//                   or, for the product mixer,  sum_j window[j, b, c] * w[j, c]
// Vectorised along c. Each task first copies the rows it reads, one batch entry's slice of channels over time
// with the zero borders, into a small buffer of its own: in (T, B, C) consecutive times are B * C apart, a stride
// at which the taps of one output all fall into the same cache sets. The forward and the input gradient take one
// batch entry and 256 bytes of channels per task and compute 8 rows at a time (4 where the kernel is wider than the
// sequence is long, and in the input gradient of sequences shorter than 16), one vector of channels wide: the rows'
// inputs slide through registers tap by tap, so a tap costs two loads for 8 terms (1.2-1.5x faster than one row at a
// time, measured). The weight product takes 256 bytes of channels per task (fewer where the threads need more
// tasks), 8 taps' sums in registers while time runs and their inputs sliding through registers likewise.
// What meets only the zero padding is not visited: the input gradient's and the weight product's taps whose
// gradients, rows of time whose inputs, are all padding, and the forward's taps at which a block's rows all read
// padding, whose terms -|w| the rows take from sums made once per call (Padding: the causal mixer's in the order of
// the taps, so that its decoding steps give the forward's sums bit for bit). A decoding step reads its window in
// place (each row once), head by head with the head's kernel value broadcast (no per-channel expansion per step), on
// one thread unless the window is large.
//
// Measured (the Zen 4 EPYC VM, one thread, B = 1024 / T, C 512, 1276ac1's kernels and these side by side, min of 7
// alternating rounds of 300 calls, bit-identical weight products and input gradients): forward at T 8, K 31 0.63 ->
// 0.48 ms (centred; its sums in another order, within roundings) and 0.61 -> 0.30 (causal, bit-identical), K 15 0.36 ->
// 0.33 and 0.32 -> 0.22, T 128 K 3 0.20 -> 0.15; input gradient at T 16, K 31 0.81 -> 0.65; weight product 0.26-0.30 ->
// 0.17-0.20 (K 3) and 0.52-0.58 -> 0.45-0.47 (K 31); the others within 5 %. Earlier: the gathers copy whole vectors by
// register, not by a library call per row (at T = 8 the weight product took 0.39-0.41 ms against 0.47-0.50 with K
// = 15).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "simd.h"

namespace {

using shiftadd::fmadd;
using shiftadd::Lanes;
using shiftadd::load;
using shiftadd::vabs;
using shiftadd::store;
using shiftadd::Vec;
using shiftadd::vector_loop;
using shiftadd::vmax;
using shiftadd::vmin;

// A task's channels: 256 bytes of a row (4 cache lines), whatever the vector width: 4 vectors with AVX-512, 8 with
// AVX2 (with 4, 128 bytes, a training step took 1.1-2.0x as long against fairseq's band path at every shape of the
// mixer sweep on a Zen 3, the forward up to 1.7x: three alternating runs of each).
constexpr int64_t SLICE_BYTES = 256;

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

// The forward's terms at the zero padding, -|0 - w[j, c]| = -|w[j, c]|, summed once per call for all rows:
//   before[n, c] = (((0 - |w[0, c]|) - |w[1, c]|) ... - |w[n - 1, c]|)   (n = 0 .. K), in the order of the taps,
//   after[n, c]  = |w[n, c]| + |w[n + 1, c]| + ... + |w[K - 1, c]|.
// A row whose first n taps read the padding starts from before[n]: the same sums in the same order as tap by tap
// (the decoding step's window holds zeros there, so a causal mixer's steps give the forward's sums bit for bit). A row
// whose taps from n on read the padding subtracts after[n] once: only centred padding has such taps.
template <typename T>
struct Padding {
  std::vector<T> before, after;
  Padding(const T* w, const Sequence& s) : before((s.taps + 1) * s.channels), after((s.taps + 1) * s.channels) {
    const int64_t c = s.channels;
    for (int64_t j = 0; j < s.taps; ++j)
      for (int64_t i = 0; i < c; ++i) before[(j + 1) * c + i] = before[j * c + i] - std::abs(w[j * c + i]);
    for (int64_t j = s.taps - 1; j >= 0; --j)
      for (int64_t i = 0; i < c; ++i) after[j * c + i] = after[(j + 1) * c + i] + std::abs(w[j * c + i]);
  }
};

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

// Runs task(b, c0, width, buf) for every batch entry b and slice [c0, c0 + width) of at most SLICE_BYTES of channels,
// in parallel, buf holding T + K - 1 rows of the slice for the task to gather into.
template <typename T, typename Task>
void for_each_slice(const Sequence& s, int threads, Task&& task) {
  constexpr int64_t slice = SLICE_BYTES / sizeof(T);
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
// or, for the last ones, one scalar (NV = 0) at a time, and over its rows t in blocks of R = 8 (where the caller
// asks for them), then of 4, then single rows. Where the kernel is wider than the sequence is long, blocks of 4 rows
// visit fewer taps (a block visits the taps that meet the sequence in one of its rows).
template <typename T, typename Rows>
void in_row_blocks(int64_t length, int64_t width, bool blocks_of_8, Rows&& rows) {
  vector_loop<T, 1>(width, [&](auto vectors, int64_t c) {
    const Lanes<T, decltype(vectors)::value> lanes;
    int64_t t = 0;
    if (blocks_of_8)
      for (; t + 8 <= length; t += 8) rows(std::integral_constant<int, 8>{}, lanes, t, c);
    for (; t + 4 <= length; t += 4) rows(std::integral_constant<int, 4>{}, lanes, t, c);
    for (; t < length; ++t) rows(std::integral_constant<int, 1>{}, lanes, t, c);
  });
}

// Rows t .. t + R - 1 of the output on one U of channels (at c in the slice): the rows' inputs slide through
// registers one tap at a time, so that a tap costs two loads (its input row and its kernel row) for R terms. The taps
// at which every row of the block reads the zero padding, [0, j0) and [j1, K), are not visited: their terms are zeros
// for the product mixer; the add mixer's rows start from before[j0] and end by subtracting after[j1] (Padding).
template <int R, bool Product, typename U, typename T>
inline void forward_rows(const T* xb, const T* w, const Padding<T>* padding, T* y, int64_t t, int64_t b, int64_t c0,
                         int64_t c, int64_t width, const Sequence& s) {
  const int64_t j0 = std::clamp<int64_t>(s.left - t - (R - 1), 0, s.taps);
  const int64_t j1 = std::clamp<int64_t>(s.left + s.length - t, j0, s.taps);
  const int64_t column = c0 + c, pitch = s.batch * s.channels;
  T* const out = y + (t * s.batch + b) * s.channels + column;
  U xr[R], sum[R];
  U before{};
  if constexpr (!Product) before = load<U>(padding->before.data() + j0 * s.channels + column);
  for (int r = 0; r < R; ++r) {
    xr[r] = load<U>(xb + (t + r + j0) * width + c);
    sum[r] = before;
  }
  for (int64_t j = j0; j < j1; ++j) {
    const U wv = load<U>(w + j * s.channels + column);
    for (int r = 0; r < R; ++r) {
      if constexpr (Product) sum[r] = fmadd(xr[r], wv, sum[r]);
      else sum[r] -= vabs(xr[r] - wv);
    }
    for (int r = 0; r + 1 < R; ++r) xr[r] = xr[r + 1];
    if (j + 1 < j1) xr[R - 1] = load<U>(xb + (t + j + R) * width + c);  // x[t + (R - 1) + (j + 1) - left]
  }
  if constexpr (!Product) {
    if (j1 < s.taps) {
      const U tail = load<U>(padding->after.data() + j1 * s.channels + column);
      for (int r = 0; r < R; ++r) sum[r] -= tail;
    }
  }
  for (int r = 0; r < R; ++r) store(out + r * pitch, sum[r]);
}

template <typename T, bool Product>
void forward(const T* x, const T* w, T* y, const Sequence& s, int threads) {
  std::optional<Padding<T>> padding;  // the add mixer's terms at the padding (the product's are zeros)
  if constexpr (!Product) padding.emplace(w, s);
  const Padding<T>* const terms = padding ? &*padding : nullptr;
  for_each_slice<T>(s, threads, [&](int64_t b, int64_t c0, int64_t width, T* xb) {
    gather(x, b, c0, width, -s.left, s.length + s.taps - 1, s, xb);  // xb[u] = x[u - left]
    in_row_blocks<T>(s.length, width, s.taps <= s.length, [&](auto block, auto lanes, int64_t t, int64_t c) {
      forward_rows<decltype(block)::value, Product, typename decltype(lanes)::U>(xb, w, terms, y, t, b, c0, c, width,
                                                                                 s);
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
    // blocks of 8 rows hold 24 vectors in registers here (16 in the forward): at T = 8 they were slower than 4
    in_row_blocks<T>(s.length, width, s.length >= 16 && s.taps <= s.length,
                     [&](auto block, auto lanes, int64_t t, int64_t c) {
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
void weight_product(const T* g, const T* x, T* p, T* gsum, const Sequence& s, int threads) {
  // SLICE_BYTES of channels a task (a gathered row then spans 4 cache lines, not one), fewer where the threads need
  // more tasks
  constexpr int64_t most = SLICE_BYTES / sizeof(T) / Vec<T>::lanes;
  const int64_t slice = Vec<T>::lanes * std::clamp<int64_t>(s.channels / (Vec<T>::lanes * threads), 1, most);
  const int64_t slices = (s.channels + slice - 1) / slice;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> xb((s.length + s.taps - 1) * slice), gb(s.length * slice), sums(s.taps * slice), column(slice);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < slices; ++i) {
      const int64_t c0 = i * slice, width = std::min(slice, s.channels - c0);
      std::fill(sums.begin(), sums.end(), T(0));  // sums[j, c] = p[j, c0 + c]
      std::fill(column.begin(), column.end(), T(0));  // column[c] = gs[c0 + c]
      for (int64_t b = 0; b < s.batch; ++b) {
        gather(x, b, c0, width, -s.left, s.length + s.taps - 1, s, xb.data());
        gather(g, b, c0, width, 0, s.length, s, gb.data());
        if (gsum)
          for (int64_t t = 0; t < s.length; ++t)
            for (int64_t c = 0; c < width; ++c) column[c] += gb[t * width + c];
        vector_loop<T, 1>(width, [&](auto vectors, int64_t c) {
          using U = typename Lanes<T, decltype(vectors)::value>::U;
          int64_t j = 0;
          for (; j + 8 <= s.taps; j += 8) product_taps<8, U>(gb.data(), xb.data(), sums.data(), j, c, width, s);
          for (; j + 4 <= s.taps; j += 4) product_taps<4, U>(gb.data(), xb.data(), sums.data(), j, c, width, s);
          for (; j < s.taps; ++j) product_taps<1, U>(gb.data(), xb.data(), sums.data(), j, c, width, s);
        });
      }
      for (int64_t j = 0; j < s.taps; ++j) std::copy_n(sums.data() + j * width, width, p + j * s.channels + c0);
      if (gsum) std::copy_n(column.data(), width, gsum + c0);
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
              sum[n] = fmadd(load<U>(xj + n * B::W), wj, sum[n]);
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
    forward<T, false>(x, per_channel(kernel, s).data(), y, s, threads);                                         \
  }                                                                                                             \
  void shiftadd_mixer_product_##T(const T* x, const T* kernel, T* y, SHIFTADD_SEQUENCE_ARGS) {                 \
    const Sequence s = SHIFTADD_SEQUENCE;                                                                       \
    forward<T, true>(x, per_channel(kernel, s).data(), y, s, threads);                                          \
  }                                                                                                             \
  void shiftadd_mixer_input_grad_##T(const T* g, const T* x, const T* kernel, T* dx, SHIFTADD_SEQUENCE_ARGS) { \
    const Sequence s = SHIFTADD_SEQUENCE;                                                                       \
    input_grad<T>(g, x, per_channel(kernel, s).data(), dx, s, threads);                                         \
  }                                                                                                             \
  void shiftadd_mixer_weight_product_##T(const T* g, const T* x, T* p, T* gsum, SHIFTADD_SEQUENCE_ARGS) {     \
    weight_product<T>(g, x, p, gsum, SHIFTADD_SEQUENCE, threads);                                               \
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
