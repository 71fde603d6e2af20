// Register-blocked CPU kernels of the adder layer's negative-L1 "matmul" (AdderNet, arXiv 1912.13200).
//
// Compiled at first use by cpu_adder.py (g++ -O3 -march=native -fopenmp) and called through ctypes; plain C
// ABI, no torch headers. Each kernel works on one group g of a batched problem; the caller loops over G
// inside the OpenMP region by passing the group count and strides.
//
// Forward (per group): s[n, m] = sum_k term(x[n, k], w[m, k]), with the weights packed in panels
// wp[p, k, r] = w[p * MR + r, k] (zero rows past M), so a micro-kernel keeps an NR x MR block of sums in vector
// registers while k runs, then writes the outputs from the finished sums and row_sum[m] = sum_k w[m, k]:
//   mode 0 (plain):   term = max(x, w), x and w centred by the weights' column means (against cancellation);
//                     out = (row_sum[m] - 2 s) + x_sum[n] = -sum_k |x - w|, with x_sum[n] = sum_k x[n, k]
//   mode 1 (centred): term = relu(x) - max(x, w), bounded by |w|; out = 2 s + row_sum[m] = sum_k |x| - |x - w|,
//                     then minus its mean over m (a second pass)
// so the caller gets the layer's output from one call, with no pass of its own over out.
// Input gradient (per group): dx[n, k] = sum_m g[n, m] * clamp(w[m, k] - x[n, k], -1, 1), an NR_GRAD x KR block
// of dx in registers while m runs (x and w zero-padded to a multiple of KR columns by the caller), evaluated as
// sum_m g[n, m] clamp(w[m, k], xc - 1, xc + 1) - xc sum_m g[n, m] with x clamped per column to the weights'
// range +- 1 (xc): three vector operations per term instead of four.
// Few weight rows (M below half a panel: depthwise convs, the lightweight add mixers with M = 1): the same
// sums vectorised along N on transposed operands (x as K x N), direct |x - w| terms (forward_few,
// input_grad_few).
// Nothing of size N x M x K exists: the kernels' temporaries are registers, and their scratch (x centred, row sums:
// O(NK)) is the caller's.
#include <algorithm>
#include <cstdint>

#include "simd.h"

namespace {

using shiftadd::by_registers;
using shiftadd::vabs;
using shiftadd::Vec;
using shiftadd::vmax;
using shiftadd::vmin;

// Register tiles, sized by the vector registers there are (32 with AVX-512, 16 with AVX2: simd.h):
constexpr int NR = by_registers(6, 3);       // rows of x per forward micro-kernel (sums and partial sums: 24 / 12)
constexpr int MR_VECS = 2;                   // vectors of weight rows per micro-kernel (forward)
constexpr int KR_VECS = 2;                   // vectors of columns per micro-kernel (input gradient)
constexpr int NR_GRAD = by_registers(4, 2);  // rows of x per input-gradient micro-kernel (lo, hi, acc: 24 / 12)
constexpr int KC = 512;      // K block of the forward (a weight panel of KC x MR stays in L2)
constexpr int NC = 96;       // rows of x per forward task
constexpr int KS = 32;       // terms per partial sum of the forward
constexpr int NB_VECS = 4;   // vectors of rows per task of the few-weight-rows kernels

// Row readers of the forward: x[i, k] of the rows a micro-kernel works on, from a (k0-offset) origin.
template <typename T>
struct DenseRows {  // rows of a contiguous (N, K) matrix
  const T* x;
  int64_t ldx;
  T at(int i, int64_t k) const { return x[i * ldx + k]; }
};

template <typename T>
struct PatchRows {  // implicit im2col: x[n, k] = xp[base[n] + offset[k]] - centre[k]
  const T* xp;
  const int64_t* base;
  const int64_t* offset;
  const T* centre;
  T at(int i, int64_t k) const { return xp[base[i] + offset[k]] - centre[k]; }
};

template <typename T>
struct DenseSource {  // x: (G, N, K) contiguous
  const T* x;
  int64_t n, k;
  DenseRows<T> rows(int64_t g, int64_t r, int64_t k0) const { return {x + (g * n + r) * k + k0, k}; }
};

template <typename T>
struct PatchSource {  // xp: padded (B, C, Hp, Wp); group g reads channels from g * group_stride; centre (G, K)
  const T* xp;
  const int64_t* base;
  const int64_t* offset;
  const T* centre;
  int64_t group_stride, k;
  PatchRows<T> rows(int64_t g, int64_t r, int64_t k0) const {
    return {xp + g * group_stride, base + r, offset + k0, centre + g * k + k0};
  }
};

// Eight independent double accumulators (a short dependency chain): sum of at(i) for i < len.
template <typename F>
inline double summed(int64_t len, F at) {
  constexpr int LANES = 8;
  double lane[LANES] = {}, total = 0;
  int64_t i = 0;
  for (; i + LANES <= len; i += LANES)
    for (int j = 0; j < LANES; ++j) lane[j] += at(i + j);
  for (; i < len; ++i) total += at(i);
  for (int j = 0; j < LANES; ++j) total += lane[j];
  return total;
}

// xc[g, r, k] = x[g, r, k] - centre[g, k] (x centred by the weights' column means, as the packed weights are) and
// x_sum[g * n + r] = sum_k xc[g, r, k].
template <typename T>
void centre_rows(const T* x, const T* centre, T* xc, T* x_sum, int64_t groups, int64_t n, int64_t k, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t row = 0; row < groups * n; ++row) {
    const T* c = centre + row / n * k;
    T* out = xc + row * k;
    for (int64_t kk = 0; kk < k; ++kk) out[kk] = x[row * k + kk] - c[kk];
    x_sum[row] = static_cast<T>(summed(k, [&](int64_t kk) { return out[kk]; }));
  }
}

// out[r, :] -= its mean over the m columns (mode 1: outputs that a normalisation over m follows).
template <typename T>
void subtract_row_means(T* out, int64_t rows, int64_t m, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < rows; ++r) {
    T* row = out + r * m;
    const T mean = static_cast<T>(summed(m, [&](int64_t c) { return row[c]; }) / m);
    for (int64_t c = 0; c < m; ++c) row[c] -= mean;
  }
}

// One NR x MR block: sums over the K block [k0, k0 + k_len) added to out (written where first); on the last K
// block, the outputs (mode 0 / 1 above) from row_sum (this panel's) and x_sum (these rows'; mode 0).
template <typename T, int MODE, int ROWS, typename Rows>
inline void forward_micro(const Rows& x, const T* panel, int64_t k_len, T* out, int64_t ldo, int64_t cols,
                          const T* row_sum, const T* x_sum, bool first, bool last) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  constexpr int MR = MR_VECS * L;
  V acc[ROWS][MR_VECS];
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < MR_VECS; ++j) acc[i][j] = V{} ;
  for (int64_t k0 = 0; k0 < k_len; k0 += KS) {  // partial sums of KS terms, then added: a shorter rounding chain
    V part[ROWS][MR_VECS];
    for (int i = 0; i < ROWS; ++i)
      for (int j = 0; j < MR_VECS; ++j) part[i][j] = V{};
    for (int64_t k = k0; k < std::min<int64_t>(k0 + KS, k_len); ++k) {
      V w[MR_VECS];
      for (int j = 0; j < MR_VECS; ++j) __builtin_memcpy(&w[j], panel + k * MR + j * L, sizeof(V));
      for (int i = 0; i < ROWS; ++i) {
        const V xb = x.at(i, k) - V{};
        if (MODE == 0) {
          for (int j = 0; j < MR_VECS; ++j) part[i][j] += vmax(xb, w[j]);
        } else {
          const V rb = vmax(xb, V{});
          for (int j = 0; j < MR_VECS; ++j) part[i][j] += rb - vmax(xb, w[j]);
        }
      }
    }
    for (int i = 0; i < ROWS; ++i)
      for (int j = 0; j < MR_VECS; ++j) acc[i][j] += part[i][j];
  }
  for (int i = 0; i < ROWS; ++i) {
    T buffer[MR];
    for (int j = 0; j < MR_VECS; ++j) __builtin_memcpy(buffer + j * L, &acc[i][j], sizeof(V));
    T* row = out + i * ldo;
    for (int64_t c = 0; c < cols; ++c) {
      T sum = first ? buffer[c] : row[c] + buffer[c];
      if (last) {
        if constexpr (MODE == 0) sum = (row_sum[c] - 2 * sum) + x_sum[i];
        else sum = 2 * sum + row_sum[c];
      }
      row[c] = sum;
    }
  }
}

// forward_micro on `rows` rows (1 <= rows <= ROWS): the micro-kernel of that many rows.
template <typename T, int MODE, int ROWS = NR, typename Rows>
inline void forward_rows(int rows, const Rows& x, const T* panel, int64_t k_len, T* out, int64_t ldo, int64_t cols,
                         const T* row_sum, const T* x_sum, bool first, bool last) {
  if constexpr (ROWS > 1) {
    if (rows < ROWS)
      return forward_rows<T, MODE, ROWS - 1>(rows, x, panel, k_len, out, ldo, cols, row_sum, x_sum, first, last);
  }
  forward_micro<T, MODE, ROWS>(x, panel, k_len, out, ldo, cols, row_sum, x_sum, first, last);
}

// x: a row source (DenseSource, PatchSource); packed: (G, P, K, MR) with P = ceil(M / MR); row_sums: (G, M);
// x_sums: (G, N) (mode 0; unread in mode 1); out: (G, N, M).
template <typename T, int MODE, typename Source>
void forward(const Source& x, const T* packed, const T* row_sums, const T* x_sums, T* out, int64_t groups,
             int64_t n, int64_t m, int64_t k, int threads) {
  constexpr int MR = MR_VECS * Vec<T>::lanes;
  const int64_t panels = (m + MR - 1) / MR, chunks = (n + NC - 1) / NC;
  const int64_t tasks = groups * panels * chunks;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t g = task / (panels * chunks), p = (task / chunks) % panels, c = task % chunks;
    const T* panel = packed + (g * panels + p) * k * MR;
    T* og = out + g * n * m + p * MR;
    const int64_t cols = std::min<int64_t>(MR, m - p * MR);
    const int64_t row_end = std::min(n, (c + 1) * NC);
    for (int64_t k0 = 0; k0 < k; k0 += KC) {
      const int64_t k_len = std::min<int64_t>(KC, k - k0);
      for (int64_t r = c * NC; r < row_end; r += NR) {
        const int rows = static_cast<int>(std::min<int64_t>(NR, row_end - r));
        forward_rows<T, MODE>(rows, x.rows(g, r, k0), panel + k0 * MR, k_len, og + r * m, m, cols,
                              row_sums + g * m + p * MR, MODE == 0 ? x_sums + g * n + r : nullptr, k0 == 0,
                              k0 + KC >= k);
      }
    }
  }
}

// dx[i, k] = sum_m g[i, m] * clamp(w[m, k], lo, hi) - xc[i, k] * gsum[i], with xc = clamp(x, wmin - 1, wmax + 1)
// per column, lo = xc - 1, hi = xc + 1 and gsum[i] = sum_m g[i, m]: one max, one min and one fma per term (the
// reference's "many rows" form, exact: beyond [wmin - 1, wmax + 1] every term saturates either way).
template <typename T, int ROWS>
inline void input_grad_micro(const T* grad, int64_t ldg, const T* gsum, const T* x, const T* w, const T* wmin,
                             const T* wmax, int64_t m_len, int64_t ld, T* dx) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  V lo[ROWS][KR_VECS], hi[ROWS][KR_VECS], acc[ROWS][KR_VECS], xc[ROWS][KR_VECS];
  const V one = T(1) - V{};
  for (int j = 0; j < KR_VECS; ++j) {
    V low, high;
    __builtin_memcpy(&low, wmin + j * L, sizeof(V));
    __builtin_memcpy(&high, wmax + j * L, sizeof(V));
    for (int i = 0; i < ROWS; ++i) {
      V xv;
      __builtin_memcpy(&xv, x + i * ld + j * L, sizeof(V));
      xc[i][j] = vmin(vmax(xv, low - one), high + one);
      lo[i][j] = xc[i][j] - one;
      hi[i][j] = xc[i][j] + one;
      acc[i][j] = V{};
    }
  }
  for (int64_t mm = 0; mm < m_len; ++mm) {
    V wv[KR_VECS];
    for (int j = 0; j < KR_VECS; ++j) __builtin_memcpy(&wv[j], w + mm * ld + j * L, sizeof(V));
    for (int i = 0; i < ROWS; ++i) {
      const V gb = grad[i * ldg + mm] - V{};
      for (int j = 0; j < KR_VECS; ++j) acc[i][j] += gb * vmin(vmax(wv[j], lo[i][j]), hi[i][j]);
    }
  }
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < KR_VECS; ++j) {
      const V out = acc[i][j] - xc[i][j] * (gsum[i] - V{});
      __builtin_memcpy(dx + i * ld + j * L, &out, sizeof(V));
    }
}

// input_grad_micro on `rows` rows (1 <= rows <= ROWS).
template <typename T, int ROWS = NR_GRAD>
inline void input_grad_rows(int rows, const T* grad, int64_t ldg, const T* gsum, const T* x, const T* w,
                            const T* wmin, const T* wmax, int64_t m_len, int64_t ld, T* dx) {
  if constexpr (ROWS > 1) {
    if (rows < ROWS) return input_grad_rows<T, ROWS - 1>(rows, grad, ldg, gsum, x, w, wmin, wmax, m_len, ld, dx);
  }
  input_grad_micro<T, ROWS>(grad, ldg, gsum, x, w, wmin, wmax, m_len, ld, dx);
}

// grad: (G, N, M); gsum: (G, N); x: (G, N, Kp); w: (G, M, Kp); wmin, wmax: (G, Kp); dx: (G, N, Kp); Kp a
// multiple of KR.
template <typename T>
void input_grad(const T* grad, const T* gsum, const T* x, const T* w, const T* wmin, const T* wmax, T* dx,
                int64_t groups, int64_t n, int64_t m, int64_t kp, int threads) {
  constexpr int KR = KR_VECS * Vec<T>::lanes;
  const int64_t blocks = kp / KR, row_blocks = (n + NR_GRAD - 1) / NR_GRAD;
  const int64_t tasks = groups * row_blocks * blocks;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t g = task / (row_blocks * blocks), r = ((task / blocks) % row_blocks) * NR_GRAD, b = task % blocks;
    const int rows = static_cast<int>(std::min<int64_t>(NR_GRAD, n - r));
    const int64_t offset = g * n * kp + r * kp + b * KR, column = g * kp + b * KR;
    input_grad_rows<T>(rows, grad + g * n * m + r * m, m, gsum + g * n + r, x + offset, w + g * m * kp + b * KR,
                       wmin + column, wmax + column, m, kp, dx + offset);
  }
}

// Few weight rows (depthwise convs, lightweight mixers: M = 1 per group), vectorised along N instead:
// xt: (G, K, Np) with Np a multiple of NB; w: (G, M, K); out: (G, M, Np).
//   mode 0: out[m, n] = sum_k |x[n, k] - w[m, k]|;  mode 1: out[m, n] = sum_k (|x[n, k]| - |x[n, k] - w[m, k]|).
template <typename T, int MODE>
void forward_few(const T* xt, const T* w, T* out, int64_t groups, int64_t np, int64_t m, int64_t k, int threads) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  constexpr int NB = NB_VECS * L;
  const int64_t blocks = np / NB, tasks = groups * blocks;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t g = task / blocks, n0 = (task % blocks) * NB;
    const T* xg = xt + g * k * np + n0;
    for (int64_t mm = 0; mm < m; ++mm) {
      const T* wr = w + (g * m + mm) * k;
      V acc[NB_VECS];
      for (int j = 0; j < NB_VECS; ++j) acc[j] = V{};
      for (int64_t kk = 0; kk < k; ++kk) {
        const V wb = wr[kk] - V{};
        for (int j = 0; j < NB_VECS; ++j) {
          V xv;
          __builtin_memcpy(&xv, xg + kk * np + j * L, sizeof(V));
          const V d = xv - wb;
          if (MODE == 0) acc[j] += vabs(d);
          else acc[j] += vabs(xv) - vabs(d);
        }
      }
      for (int j = 0; j < NB_VECS; ++j) __builtin_memcpy(out + (g * m + mm) * np + n0 + j * L, &acc[j], sizeof(V));
    }
  }
}

// dxt[k, n] = sum_m gt[m, n] * clamp(w[m, k] - xt[k, n], -1, 1); gt: (G, M, Np), xt and dxt: (G, K, Np).
template <typename T>
void input_grad_few(const T* gt, const T* xt, const T* w, T* dxt, int64_t groups, int64_t np, int64_t m, int64_t k,
                    int threads) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  constexpr int NB = NB_VECS * L;
  const int64_t blocks = np / NB, tasks = groups * blocks;
  const V one = T(1) - V{}, minus_one = T(-1) - V{};
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t g = task / blocks, n0 = (task % blocks) * NB;
    for (int64_t kk = 0; kk < k; ++kk) {
      V xv[NB_VECS], acc[NB_VECS];
      for (int j = 0; j < NB_VECS; ++j) {
        __builtin_memcpy(&xv[j], xt + (g * k + kk) * np + n0 + j * L, sizeof(V));
        acc[j] = V{};
      }
      for (int64_t mm = 0; mm < m; ++mm) {
        const V wb = w[(g * m + mm) * k + kk] - V{};
        for (int j = 0; j < NB_VECS; ++j) {
          V gv;
          __builtin_memcpy(&gv, gt + (g * m + mm) * np + n0 + j * L, sizeof(V));
          acc[j] += gv * vmin(vmax(wb - xv[j], minus_one), one);
        }
      }
      for (int j = 0; j < NB_VECS; ++j) __builtin_memcpy(dxt + (g * k + kk) * np + n0 + j * L, &acc[j], sizeof(V));
    }
  }
}

// The dense forward: mode 0 centres x into xc (G, N, K) and sums its rows into x_sum (G, N), scratch the caller
// allocates; mode 1 reads x as it is and subtracts the row means at the end.
template <typename T>
void dense_forward(const T* x, const T* centre, const T* packed, const T* row_sums, T* xc, T* x_sum, T* out,
                   int64_t g, int64_t n, int64_t m, int64_t k, int centred, int threads) {
  if (centred) {
    forward<T, 1>(DenseSource<T>{x, n, k}, packed, row_sums, nullptr, out, g, n, m, k, threads);
    subtract_row_means(out, g * n, m, threads);
    return;
  }
  centre_rows(x, centre, xc, x_sum, g, n, k, threads);
  forward<T, 0>(DenseSource<T>{xc, n, k}, packed, row_sums, x_sum, out, g, n, m, k, threads);
}

}  // namespace

extern "C" {
int shiftadd_mr_float() { return MR_VECS * Vec<float>::lanes; }
int shiftadd_mr_double() { return MR_VECS * Vec<double>::lanes; }
int shiftadd_kr_float() { return KR_VECS * Vec<float>::lanes; }
int shiftadd_kr_double() { return KR_VECS * Vec<double>::lanes; }
int shiftadd_nb_float() { return NB_VECS * Vec<float>::lanes; }
int shiftadd_nb_double() { return NB_VECS * Vec<double>::lanes; }

void shiftadd_forward_float(const float* x, const float* centre, const float* packed, const float* row_sums,
                            float* xc, float* x_sum, float* out, int64_t g, int64_t n, int64_t m, int64_t k,
                            int centred, int threads) {
  dense_forward<float>(x, centre, packed, row_sums, xc, x_sum, out, g, n, m, k, centred, threads);
}
void shiftadd_forward_double(const double* x, const double* centre, const double* packed, const double* row_sums,
                             double* xc, double* x_sum, double* out, int64_t g, int64_t n, int64_t m, int64_t k,
                             int centred, int threads) {
  dense_forward<double>(x, centre, packed, row_sums, xc, x_sum, out, g, n, m, k, centred, threads);
}
void shiftadd_input_grad_float(const float* grad, const float* gsum, const float* x, const float* w,
                               const float* wmin, const float* wmax, float* dx, int64_t g, int64_t n, int64_t m,
                               int64_t kp, int threads) {
  input_grad<float>(grad, gsum, x, w, wmin, wmax, dx, g, n, m, kp, threads);
}
void shiftadd_input_grad_double(const double* grad, const double* gsum, const double* x, const double* w,
                                const double* wmin, const double* wmax, double* dx, int64_t g, int64_t n, int64_t m,
                                int64_t kp, int threads) {
  input_grad<double>(grad, gsum, x, w, wmin, wmax, dx, g, n, m, kp, threads);
}
void shiftadd_forward_few_float(const float* xt, const float* w, float* out, int64_t g, int64_t np, int64_t m,
                                int64_t k, int centred, int threads) {
  if (centred) forward_few<float, 1>(xt, w, out, g, np, m, k, threads);
  else forward_few<float, 0>(xt, w, out, g, np, m, k, threads);
}
void shiftadd_forward_few_double(const double* xt, const double* w, double* out, int64_t g, int64_t np, int64_t m,
                                 int64_t k, int centred, int threads) {
  if (centred) forward_few<double, 1>(xt, w, out, g, np, m, k, threads);
  else forward_few<double, 0>(xt, w, out, g, np, m, k, threads);
}
void shiftadd_input_grad_few_float(const float* gt, const float* xt, const float* w, float* dxt, int64_t g,
                                   int64_t np, int64_t m, int64_t k, int threads) {
  input_grad_few<float>(gt, xt, w, dxt, g, np, m, k, threads);
}
void shiftadd_input_grad_few_double(const double* gt, const double* xt, const double* w, double* dxt, int64_t g,
                                    int64_t np, int64_t m, int64_t k, int threads) {
  input_grad_few<double>(gt, xt, w, dxt, g, np, m, k, threads);
}
// Plain forward of a (grouped) convolution by implicit im2col: row n of group g reads xp[g * group_stride +
// base[n] + offset[k]] - centre[g, k]; no unfolded patches. x_sum (G, N): the centred patches' sums (the caller's
// box filter: gathered here they took longer).
void shiftadd_conv_forward_float(const float* xp, const int64_t* base, const int64_t* offset, const float* centre,
                                 const float* packed, const float* row_sums, const float* x_sum, float* out,
                                 int64_t g, int64_t n, int64_t m, int64_t k, int64_t group_stride, int threads) {
  forward<float, 0>(PatchSource<float>{xp, base, offset, centre, group_stride, k}, packed, row_sums, x_sum, out, g,
                    n, m, k, threads);
}
void shiftadd_conv_forward_double(const double* xp, const int64_t* base, const int64_t* offset, const double* centre,
                                  const double* packed, const double* row_sums, const double* x_sum, double* out,
                                  int64_t g, int64_t n, int64_t m, int64_t k, int64_t group_stride, int threads) {
  forward<double, 0>(PatchSource<double>{xp, base, offset, centre, group_stride, k}, packed, row_sums, x_sum, out,
                     g, n, m, k, threads);
}
}
