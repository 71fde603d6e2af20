// Register-blocked CPU kernels of the adder layer's negative-L1 "matmul" (AdderNet, arXiv 1912.13200).
//
// Compiled at first use by cpu_adder.py (g++ -O3 -march=native -fopenmp) and called through ctypes; plain C
// ABI, no torch headers. Each kernel works on one group g of a batched problem; the caller loops over G
// inside the OpenMP region by passing the group count and strides.
//
// Forward (per group): out[n, m] = sum_k term(x[n, k], w[m, k]), with the weights packed in panels
// wp[p, k, r] = w[p * MR + r, k] (zero rows past M), so a micro-kernel keeps an NR x MR block of outputs in
// vector registers while k runs:
//   mode 0 (plain):   term = max(x, w)                  (the caller forms -(2 * out - sum_k x - sum_k w))
//   mode 1 (centred): term = relu(x) - max(x, w)        (bounded by |w|; the caller forms 2 * out + sum_k w)
// Input gradient (per group): dx[n, k] = sum_m g[n, m] * clamp(w[m, k] - x[n, k], -1, 1), an NR_GRAD x KR block
// of dx in registers while m runs (x and w zero-padded to a multiple of KR columns by the caller), evaluated as
// sum_m g[n, m] clamp(w[m, k], xc - 1, xc + 1) - xc sum_m g[n, m] with x clamped per column to the weights'
// range +- 1 (xc): three vector operations per term instead of four.
// Few weight rows (M below half a panel: depthwise convs, the lightweight add mixers with M = 1): the same
// sums vectorised along N on transposed operands (x as K x N), direct |x - w| terms (forward_few,
// input_grad_few).
// Nothing of size N x M x K exists: the only temporaries are registers.
#include <algorithm>
#include <cstdint>

#include "simd.h"

namespace {

using shiftadd::vabs;
using shiftadd::Vec;
using shiftadd::vmax;
using shiftadd::vmin;

constexpr int NR = 6;        // rows of x per micro-kernel
constexpr int MR_VECS = 2;   // vectors of weight rows per micro-kernel (forward)
constexpr int KR_VECS = 2;   // vectors of columns per micro-kernel (input gradient)
constexpr int NR_GRAD = 4;   // rows of x per input-gradient micro-kernel (lo, hi, acc: 24 registers)
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

template <typename T, int MODE, int ROWS, typename Rows>
inline void forward_micro(const Rows& x, const T* panel, int64_t k_len, T* out, int64_t ldo, int64_t cols,
                          bool first) {
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
    if (first) {
      for (int64_t c = 0; c < cols; ++c) row[c] = buffer[c];
    } else {
      for (int64_t c = 0; c < cols; ++c) row[c] += buffer[c];
    }
  }
}

template <typename T, int MODE, typename Rows>
inline void forward_rows(int rows, const Rows& x, const T* panel, int64_t k_len, T* out, int64_t ldo, int64_t cols,
                         bool first) {
  switch (rows) {
    case 6: forward_micro<T, MODE, 6>(x, panel, k_len, out, ldo, cols, first); break;
    case 5: forward_micro<T, MODE, 5>(x, panel, k_len, out, ldo, cols, first); break;
    case 4: forward_micro<T, MODE, 4>(x, panel, k_len, out, ldo, cols, first); break;
    case 3: forward_micro<T, MODE, 3>(x, panel, k_len, out, ldo, cols, first); break;
    case 2: forward_micro<T, MODE, 2>(x, panel, k_len, out, ldo, cols, first); break;
    default: forward_micro<T, MODE, 1>(x, panel, k_len, out, ldo, cols, first); break;
  }
}

// x: a row source (DenseSource, PatchSource); packed: (G, P, K, MR) with P = ceil(M / MR); out: (G, N, M).
template <typename T, int MODE, typename Source>
void forward(const Source& x, const T* packed, T* out, int64_t groups, int64_t n, int64_t m, int64_t k,
             int threads) {
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
        forward_rows<T, MODE>(rows, x.rows(g, r, k0), panel + k0 * MR, k_len, og + r * m, m, cols, k0 == 0);
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

template <typename T>
inline void input_grad_rows(int rows, const T* grad, int64_t ldg, const T* gsum, const T* x, const T* w,
                            const T* wmin, const T* wmax, int64_t m_len, int64_t ld, T* dx) {
  switch (rows) {
    case 4: input_grad_micro<T, 4>(grad, ldg, gsum, x, w, wmin, wmax, m_len, ld, dx); break;
    case 3: input_grad_micro<T, 3>(grad, ldg, gsum, x, w, wmin, wmax, m_len, ld, dx); break;
    case 2: input_grad_micro<T, 2>(grad, ldg, gsum, x, w, wmin, wmax, m_len, ld, dx); break;
    default: input_grad_micro<T, 1>(grad, ldg, gsum, x, w, wmin, wmax, m_len, ld, dx); break;
  }
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

}  // namespace

extern "C" {
int shiftadd_mr_float() { return MR_VECS * Vec<float>::lanes; }
int shiftadd_mr_double() { return MR_VECS * Vec<double>::lanes; }
int shiftadd_kr_float() { return KR_VECS * Vec<float>::lanes; }
int shiftadd_kr_double() { return KR_VECS * Vec<double>::lanes; }
int shiftadd_nb_float() { return NB_VECS * Vec<float>::lanes; }
int shiftadd_nb_double() { return NB_VECS * Vec<double>::lanes; }

void shiftadd_forward_float(const float* x, const float* packed, float* out, int64_t g, int64_t n, int64_t m,
                            int64_t k, int centred, int threads) {
  const DenseSource<float> source{x, n, k};
  if (centred) forward<float, 1>(source, packed, out, g, n, m, k, threads);
  else forward<float, 0>(source, packed, out, g, n, m, k, threads);
}
void shiftadd_forward_double(const double* x, const double* packed, double* out, int64_t g, int64_t n, int64_t m,
                             int64_t k, int centred, int threads) {
  const DenseSource<double> source{x, n, k};
  if (centred) forward<double, 1>(source, packed, out, g, n, m, k, threads);
  else forward<double, 0>(source, packed, out, g, n, m, k, threads);
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
// base[n] + offset[k]] - centre[g, k]; no unfolded patches.
void shiftadd_conv_forward_float(const float* xp, const int64_t* base, const int64_t* offset, const float* centre,
                                 const float* packed, float* out, int64_t g, int64_t n, int64_t m, int64_t k,
                                 int64_t group_stride, int threads) {
  forward<float, 0>(PatchSource<float>{xp, base, offset, centre, group_stride, k}, packed, out, g, n, m, k, threads);
}
void shiftadd_conv_forward_double(const double* xp, const int64_t* base, const int64_t* offset, const double* centre,
                                  const double* packed, double* out, int64_t g, int64_t n, int64_t m, int64_t k,
                                  int64_t group_stride, int threads) {
  forward<double, 0>(PatchSource<double>{xp, base, offset, centre, group_stride, k}, packed, out, g, n, m, k,
                     threads);
}
}
