// Event-driven products of a mostly-zero (spike) matrix x with a dense matrix.
//
//   forward:            out (N x M) = x (N x K) @ w (K x M)
//   weight gradient:    out (K x M) = x (N x K)^T @ g (N x M)
//
// Only the non-zero entries of x are visited: a row's non-zeros are found from bit masks of x
// (one word per 64 columns), and each adds value * (a row of w) into the output row -- for a
// binary spike matrix at density p that is p * N * K * M multiply-adds instead of N * K * M.
//
// Cache layout: the dense operand is cut into column chunks of up to 256 bytes (64 floats / 32
// doubles; 64 or 128 bytes for outputs of up to 16 / 32 floats) stored as contiguous panels
// (chunk, row, chunk), so a gathered row of a chunk is at most 4 adjacent cache lines and a
// panel of a 2048-row matrix (512 KiB) stays in L2; a row's accumulators for one chunk are up
// to 4 vectors of 64 bytes (one AVX-512 register each, two AVX ones).  Rows of x whose width is
// a power of two would otherwise map the gathered rows of w onto a few cache sets.
//
// Order of the sums: each output element is summed over the non-zeros of x in increasing
// index order (k for the forward, n for the weight gradient), by one thread; the result
// therefore does not depend on the number of threads.  It differs from a dense GEMM's
// blocked order by rounding only.
//
// Three steps, so that the masks of x's non-zeros are computed once per product and reused: the masks
// and row counts (one read of x: the caller decides from the total whether a dense product is faster;
// it also says whether every non-zero is 1), the forward from the masks, the weight gradient from the
// same masks.  The products walk the masks' set bits (no branch per zero entry) and read x's values
// only when they are not all 1.  Entry points: plain C functions
// for ctypes (torch backend) and, when compiled with NEUROPLASTIC_XLA_FFI, XLA FFI handlers for jax.ffi
// (JAX backend).  Built on first use by neuroplastic.backend.native.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>
#include <vector>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace {

typedef float vf __attribute__((vector_size(64), aligned(4)));
typedef double vd __attribute__((vector_size(64), aligned(8)));
template <typename T> struct Vec;
template <> struct Vec<float> { typedef vf type; };
template <> struct Vec<double> { typedef vd type; };

constexpr int64_t kRowBlock = 256;    // rows of x per tile of the masks and the forward, and per block of g's column sums
constexpr int64_t kPrefetchRows = 4;   // how far ahead the weight gradient fetches rows of g

// Runs fn(0..ntiles-1) on up to nthreads threads, tile t on thread t % nthreads.
template <typename F>
void parallel_for(int64_t ntiles, int nthreads, const F &fn) {
  if (nthreads > ntiles) nthreads = static_cast<int>(ntiles);
  if (nthreads <= 1) {
    for (int64_t t = 0; t < ntiles; ++t) fn(t);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(nthreads - 1);
  for (int i = 1; i < nthreads; ++i)
    pool.emplace_back([&, i] { for (int64_t t = i; t < ntiles; t += nthreads) fn(t); });
  for (int64_t t = 0; t < ntiles; t += nthreads) fn(t);
  for (auto &th : pool) th.join();
}

// lanes_ne(q, c): bit i set where q[i] != c, for the kLanes<T> entries at q, one vector compare where the build
// has AVX-512 or AVX (the only per-instruction-set code; `!=` as in C: NaN differs from everything, -0 equals 0).
#if defined(__AVX512F__)
template <typename T> constexpr int64_t kLanes = 64 / sizeof(T);
inline uint64_t lanes_ne(const float *q, float c) { return _mm512_cmp_ps_mask(_mm512_loadu_ps(q), _mm512_set1_ps(c), _CMP_NEQ_UQ); }
inline uint64_t lanes_ne(const double *q, double c) { return _mm512_cmp_pd_mask(_mm512_loadu_pd(q), _mm512_set1_pd(c), _CMP_NEQ_UQ); }
#elif defined(__AVX__)
template <typename T> constexpr int64_t kLanes = 32 / sizeof(T);
inline uint64_t lanes_ne(const float *q, float c) { return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(q), _mm256_set1_ps(c), _CMP_NEQ_UQ)); }
inline uint64_t lanes_ne(const double *q, double c) { return _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(q), _mm256_set1_pd(c), _CMP_NEQ_UQ)); }
#else
template <typename T> constexpr int64_t kLanes = 1;
template <typename T> inline uint64_t lanes_ne(const T *q, T c) { return *q != c; }
#endif

// Bit j of the result: whether p[j] != c (len <= 64): whole vectors by lanes_ne, the tail one by one.
template <typename T>
inline uint64_t ne_bits(const T *p, int64_t len, T c) {
  uint64_t m = 0;
  int64_t j = 0;
  for (; j + kLanes<T> <= len; j += kLanes<T>) m |= lanes_ne(p + j, c) << j;
  for (; j < len; ++j) m |= static_cast<uint64_t>(p[j] != c) << j;
  return m;
}

// The non-zeros of each row of x (N x K) as bit masks (words of 64 columns, W = ceil(K / 64) a row) and the
// count of each row, in one read of x; returns the total and sets *binary to whether every non-zero is exactly 1
// (spikes): the products then never read x again (1 * r is r exactly, so the sums are the same either way).  The
// masks and counts are kept and reused (the JAX path computes them once for the forward's density check, its
// product and the weight gradient).
template <typename T>
int64_t nonzero_masks(const T *x, int64_t N, int64_t K, uint64_t *bits, int32_t *counts, int32_t *binary, int nthreads) {
  const int64_t W = (K + 63) / 64, nblocks = (N + kRowBlock - 1) / kRowBlock;
  std::vector<int64_t> block_total(nblocks, 0);
  std::vector<char> block_binary(nblocks, 1);
  parallel_for(nblocks, nthreads, [&](int64_t b) {
    const int64_t n1 = (b + 1) * kRowBlock < N ? (b + 1) * kRowBlock : N;
    int64_t total = 0;
    bool ones = true;
    for (int64_t n = b * kRowBlock; n < n1; ++n) {
      int32_t count = 0;
      for (int64_t w = 0; w < W; ++w) {
        const int64_t k0 = w * 64, len = K - k0 < 64 ? K - k0 : 64;
        const uint64_t m = ne_bits(x + n * K + k0, len, T(0));
        if (ones && m) ones = (m & ne_bits(x + n * K + k0, len, T(1))) == 0;
        bits[n * W + w] = m;
        count += __builtin_popcountll(m);
      }
      counts[n] = count;
      total += count;
    }
    block_total[b] = total;
    block_binary[b] = ones;
  });
  int64_t nnz = 0;
  bool ones = true;
  for (int64_t b = 0; b < nblocks; ++b) nnz += block_total[b], ones = ones && block_binary[b];
  if (binary) *binary = ones ? 1 : 0;
  return nnz;
}

// The vectors (of 64 bytes: 16 floats / 8 doubles) in a column chunk for an output M columns wide: the fewest
// of 1, 2, 4 that cover M, at most 4 (256 bytes; wider outputs take several chunks).  A narrow output (a
// readout's ten classes) then costs one vector operation per non-zero instead of four on zero padding.
template <typename T>
int chunk_vectors(int64_t M) {
  constexpr int64_t lanes = 64 / sizeof(T);
  int nv = 1;
  while (nv < 4 && nv * lanes < M) nv *= 2;
  return nv;
}

// a (R x M) cut into zero-padded column chunks of CW entries: panel[(chunk * R + r) * CW + j].
template <typename T>
std::vector<T> pack_panels(const T *a, int64_t R, int64_t M, int64_t CW, int nthreads) {
  const int64_t nchunks = (M + CW - 1) / CW;
  std::vector<T> panel(nchunks * R * CW, T(0));
  parallel_for(nchunks, nthreads, [&](int64_t c) {
    const int64_t j0 = c * CW, width = M - j0 < CW ? M - j0 : CW;
    for (int64_t r = 0; r < R; ++r) std::memcpy(&panel[(c * R + r) * CW], a + r * M + j0, width * sizeof(T));
  });
  return panel;
}

// Calls fn(k, v) for the non-zeros x[k] = v of a row in increasing k, from the row's masks (W words); v is 1
// without reading x where the caller knows every non-zero is 1 (Binary).
template <bool Binary, typename T, typename F>
inline void for_nonzeros(const uint64_t *mask, int64_t W, const T *row, const F &fn) {
  for (int64_t w = 0; w < W; ++w)
    for (uint64_t m = mask[w]; m; m &= m - 1) {
      const int64_t k = w * 64 + __builtin_ctzll(m);
      fn(k, Binary ? T(1) : row[k]);
    }
}

// out (N x M) = x @ w (+ bias (M), when not null: added to each finished sum, the rounding of a separate
// addition, without a second pass over out), x's non-zeros given by its masks; NV vectors per column chunk.
template <typename T, int NV, bool Binary>
void masked_matmul_nv(const T *x, const uint64_t *bits, const T *w, const T *bias, T *out, int64_t N, int64_t K,
                      int64_t M, int nthreads) {
  typedef typename Vec<T>::type V;
  constexpr int64_t CW = NV * static_cast<int64_t>(sizeof(V) / sizeof(T));
  const std::vector<T> panel = pack_panels(w, K, M, CW, nthreads);
  const int64_t W = (K + 63) / 64, nchunks = (M + CW - 1) / CW, nblocks = (N + kRowBlock - 1) / kRowBlock;
  parallel_for(nchunks * nblocks, nthreads, [&](int64_t tile) {
    const int64_t chunk = tile / nblocks, b = tile % nblocks;
    const int64_t j0 = chunk * CW, width = M - j0 < CW ? M - j0 : CW;
    const T *P = panel.data() + chunk * K * CW;
    const int64_t n1 = (b + 1) * kRowBlock < N ? (b + 1) * kRowBlock : N;
    V bv[NV] = {};
    if (bias) std::memcpy(bv, bias + j0, width * sizeof(T));
    for (int64_t n = b * kRowBlock; n < n1; ++n) {
      V acc[NV] = {};
      for_nonzeros<Binary>(bits + n * W, W, x + n * K, [&](int64_t k, T v) {
        const V *r = reinterpret_cast<const V *>(P + k * CW);
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) acc[i] += Binary ? r[i] : v * r[i];
      });
      if (bias)
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) acc[i] += bv[i];
      if (width == CW)
        std::memcpy(out + n * M + j0, acc, CW * sizeof(T));  // a constant size: vector stores, no library call
      else
        std::memcpy(out + n * M + j0, acc, width * sizeof(T));
    }
  });
}

// out (K x M) = x^T @ g (N x M), x's non-zeros given by its masks and row counts; NV vectors per column chunk.
// With gsum (M) not null, also gsum = the column sums of g (a bias's gradient) from the same read of g: every
// row of g, summed in blocks of kRowBlock rows in order, the block sums then added in order (fixed by N alone).
template <typename T, int NV, bool Binary>
void masked_matmul_xt_nv(const T *x, const uint64_t *bits, const int32_t *counts, const T *g, T *out, T *gsum, int64_t N,
                         int64_t K, int64_t M, int nthreads) {
  typedef typename Vec<T>::type V;
  constexpr int64_t CW = NV * static_cast<int64_t>(sizeof(V) / sizeof(T));
  const int64_t W = (K + 63) / 64, nchunks = (M + CW - 1) / CW;
  std::vector<T> panel(nchunks * K * CW, T(0));
  parallel_for(nchunks, nthreads, [&](int64_t chunk) {
    const int64_t j0 = chunk * CW, width = M - j0 < CW ? M - j0 : CW;
    T *P = panel.data() + chunk * K * CW;
    V total[NV] = {}, block[NV] = {};
    for (int64_t n = 0; n < N; ++n) {
      if (gsum) {
        if (n % kRowBlock == 0)
#pragma GCC unroll 4
          for (int i = 0; i < NV; ++i) total[i] += block[i], block[i] = V{};
      } else if (counts[n] == 0) {
        continue;
      }
      if (n + kPrefetchRows < N)  // a chunk reads every row at a stride of M: fetch ahead of the hardware's guess
        for (int64_t q = 0; q < width; q += 64 / static_cast<int64_t>(sizeof(T)))
          __builtin_prefetch(g + (n + kPrefetchRows) * M + j0 + q);
      V grow[NV] = {};
      if (width == CW)
        std::memcpy(grow, g + n * M + j0, CW * sizeof(T));  // a constant size: vector loads, no library call
      else
        std::memcpy(grow, g + n * M + j0, width * sizeof(T));  // the rest stays zero
      if (gsum)
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) block[i] += grow[i];
      for_nonzeros<Binary>(bits + n * W, W, x + n * K, [&](int64_t k, T v) {
        V *d = reinterpret_cast<V *>(P + k * CW);
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) d[i] += Binary ? grow[i] : v * grow[i];
      });
    }
    if (gsum) {
#pragma GCC unroll 4
      for (int i = 0; i < NV; ++i) total[i] += block[i];
      std::memcpy(gsum + j0, total, width * sizeof(T));
    }
    for (int64_t k = 0; k < K; ++k) std::memcpy(out + k * M + j0, P + k * CW, width * sizeof(T));
  });
}

// The instantiation for the output width (chunk_vectors) and whether x is binary.
#define NP_BY_WIDTH(FN, T, M, BINARY, ...)                                                   \
  switch (chunk_vectors<T>(M) * 2 + ((BINARY) ? 1 : 0)) {                                  \
    case 2: FN<T, 1, false>(__VA_ARGS__); break;                                           \
    case 3: FN<T, 1, true>(__VA_ARGS__); break;                                            \
    case 4: FN<T, 2, false>(__VA_ARGS__); break;                                           \
    case 5: FN<T, 2, true>(__VA_ARGS__); break;                                            \
    case 9: FN<T, 4, true>(__VA_ARGS__); break;                                            \
    default: FN<T, 4, false>(__VA_ARGS__); break;                                          \
  }

// Runs fn(), turning exceptions into the error codes: -1 when memory ran out, -2 on another failure.
template <typename F>
int64_t guarded(const F &fn) {
  try {
    return fn();
  } catch (const std::bad_alloc &) {
    return -1;
  } catch (...) {
    return -2;
  }
}

// The entry points' three steps, each guarded: the masks return the number of non-zeros, the products 0 (or an
// error code).  binary: what spike_masks said of x (0 makes the products read x's values, always correct).
template <typename T>
int64_t spike_masks(const T *x, uint64_t *bits, int32_t *counts, int32_t *binary, int64_t N, int64_t K, int nthreads) {
  return guarded([&] { return nonzero_masks(x, N, K, bits, counts, binary, nthreads < 1 ? 1 : nthreads); });
}

template <typename T>
int64_t masked_matmul(const T *x, const T *w, const T *bias, const uint64_t *bits, int32_t binary, T *out, int64_t N,
                      int64_t K, int64_t M, int nthreads) {
  return guarded([&] {
    NP_BY_WIDTH(masked_matmul_nv, T, M, binary, x, bits, w, bias, out, N, K, M, nthreads < 1 ? 1 : nthreads);
    return int64_t(0);
  });
}

template <typename T>
int64_t masked_matmul_xt(const T *x, const T *g, const uint64_t *bits, const int32_t *counts, int32_t binary, T *out,
                         T *gsum, int64_t N, int64_t K, int64_t M, int nthreads) {
  return guarded([&] {
    NP_BY_WIDTH(masked_matmul_xt_nv, T, M, binary, x, bits, counts, g, out, gsum, N, K, M, nthreads < 1 ? 1 : nthreads);
    return int64_t(0);
  });
}

}  // namespace

// ctypes entry points, the same three steps as the XLA FFI handlers below.  np_spike_masks_* writes x's
// non-zero masks (N x ceil(K / 64) words), row counts (N) and, unless null, *binary (1 when every non-zero is
// exactly 1) and returns the total; np_masked_matmul_* computes out = x @ w (+ bias, unless null) and
// np_masked_matmul_xt_* out = x^T @ g (and, unless gsum is null, gsum = g's column sums: a bias's gradient from
// the same read of g) from x and its masks, reading x's values only where binary is 0; they return 0.
// Negative returns: -1 when memory ran out, -2 on another failure.
#define NP_CTYPES(T, S)                                                                                           \
  int64_t np_spike_masks_##S(const T *x, uint64_t *bits, int32_t *counts, int32_t *binary, int64_t N, int64_t K,   \
                             int nthreads) {                                                                      \
    return spike_masks(x, bits, counts, binary, N, K, nthreads);                                                 \
  }                                                                                                               \
  int64_t np_masked_matmul_##S(const T *x, const T *w, const T *bias, const uint64_t *bits, int32_t binary, T *out, \
                               int64_t N, int64_t K, int64_t M, int nthreads) {                                   \
    return masked_matmul(x, w, bias, bits, binary, out, N, K, M, nthreads);                                       \
  }                                                                                                               \
  int64_t np_masked_matmul_xt_##S(const T *x, const T *g, const uint64_t *bits, const int32_t *counts,             \
                                  int32_t binary, T *out, T *gsum, int64_t N, int64_t K, int64_t M, int nthreads) { \
    return masked_matmul_xt(x, g, bits, counts, binary, out, gsum, N, K, M, nthreads);                            \
  }
extern "C" {
NP_CTYPES(float, f32)
NP_CTYPES(double, f64)
}

#ifdef NEUROPLASTIC_XLA_FFI
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

ffi::Error check(int64_t r) {
  if (r == -1) return ffi::Error(ffi::ErrorCode::kResourceExhausted, "event_matmul: out of memory");
  if (r < 0) return ffi::Error(ffi::ErrorCode::kInternal, "event_matmul: kernel failed");
  return ffi::Error::Success();
}

// Whether bits has the shape of x's (N x K) masks (u32 (N, 2 ceil(K / 64))).
bool bits_shape(int64_t N, int64_t K, ffi::Span<const int64_t> bd) {
  return bd.size() == 2 && bd[0] == N && bd[1] == 2 * ((K + 63) / 64);
}

// Whether bits and counts (s32 (N)) have the shapes of x's (N x K) masks and row counts.
bool mask_shapes(int64_t N, int64_t K, ffi::Span<const int64_t> bd, ffi::Span<const int64_t> cd) {
  return bits_shape(N, K, bd) && cd.size() == 1 && cd[0] == N;
}

// The masks of x's non-zeros (u32 (N, 2 W): each 64-column word as two 32-bit halves, low first, so that JAX
// holds them without 64-bit types), the count of each row (s32 (N)), and flags (s32 scalar): bit 0 set when the
// total is at most max_nnz, bit 1 when every non-zero is exactly 1.  One read of x; the products below take the
// masks and flags instead of reading x again (binary x: not at all).
template <ffi::DataType DT>
ffi::Error SpikeMasksFfi(ffi::Buffer<DT> x, ffi::ResultBuffer<ffi::DataType::U32> bits,
                         ffi::ResultBuffer<ffi::DataType::S32> counts, ffi::ResultBuffer<ffi::DataType::S32> flags,
                         int32_t nthreads, int64_t max_nnz) {
  const auto xd = x.dimensions();
  if (xd.size() != 2) return ffi::Error(ffi::ErrorCode::kInvalidArgument, "spike_masks: x must be 2-D");
  const int64_t N = xd[0], K = xd[1];
  if (!mask_shapes(N, K, bits->dimensions(), counts->dimensions()))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "spike_masks: the masks must be (N, 2 ceil(K / 64)), the counts (N)");
  uint64_t *words = reinterpret_cast<uint64_t *>(bits->typed_data());  // XLA's buffers are at least 16-byte aligned
  int32_t binary = 0;
  const int64_t r = spike_masks(x.typed_data(), words, counts->typed_data(), &binary, N, K, nthreads);
  flags->typed_data()[0] = (r >= 0 && r <= max_nnz ? 1 : 0) | (r >= 0 && binary ? 2 : 0);
  return check(r);
}

// Whether the flags of SpikeMasksFfi (s32 scalar) say that x is binary.
bool binary_flag(const ffi::Buffer<ffi::DataType::S32> &flags) {
  return flags.element_count() == 1 && (flags.typed_data()[0] & 2) != 0;
}

// out = x @ w (+ bias where has_bias), x's non-zeros given by SpikeMasksFfi's masks and flags.
template <ffi::DataType DT>
ffi::Error MaskedMatmulFfi(ffi::Buffer<DT> x, ffi::Buffer<DT> w, ffi::Buffer<DT> bias, ffi::Buffer<ffi::DataType::U32> bits,
                           ffi::Buffer<ffi::DataType::S32> flags, ffi::ResultBuffer<DT> out, int32_t nthreads,
                           int32_t has_bias) {
  const auto xd = x.dimensions(), wd = w.dimensions(), bd = bias.dimensions();
  if (xd.size() != 2 || wd.size() != 2 || wd[0] != xd[1])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "event_matmul: x (N, K) and w (K, M) must be 2-D with the same K");
  if (has_bias && (bd.size() != 1 || bd[0] != wd[1]))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "event_matmul: bias must be 1-D with M entries");
  const int64_t N = xd[0], K = xd[1], M = wd[1];
  if (!bits_shape(N, K, bits.dimensions()))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "event_matmul: the masks do not have x's shape");
  const uint64_t *words = reinterpret_cast<const uint64_t *>(bits.typed_data());
  return check(masked_matmul(x.typed_data(), w.typed_data(), has_bias ? bias.typed_data() : nullptr, words,
                             binary_flag(flags), out->typed_data(), N, K, M, nthreads));
}

// Weight gradient: out (K x M) = x (N x K)^T @ g (N x M), x's non-zeros given by the masks, counts and flags;
// with with_sums, also gsum (M) = g's column sums (the gradient of a bias added to the product), else gsum = 0.
template <ffi::DataType DT>
ffi::Error MaskedMatmulXtFfi(ffi::Buffer<DT> x, ffi::Buffer<DT> g, ffi::Buffer<ffi::DataType::U32> bits,
                             ffi::Buffer<ffi::DataType::S32> counts, ffi::Buffer<ffi::DataType::S32> flags,
                             ffi::ResultBuffer<DT> out, ffi::ResultBuffer<DT> gsum, int32_t nthreads, int32_t with_sums) {
  const auto xd = x.dimensions(), gd = g.dimensions(), sd = gsum->dimensions();
  if (xd.size() != 2 || gd.size() != 2 || gd[0] != xd[0])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "event_matmul_xt: x (N, K) and g (N, M) must be 2-D with the same N");
  const int64_t N = xd[0], K = xd[1], M = gd[1];
  if (sd.size() != 1 || sd[0] != M)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "event_matmul_xt: the column sums must be 1-D with M entries");
  if (!mask_shapes(N, K, bits.dimensions(), counts.dimensions()))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "event_matmul_xt: the masks and counts do not have x's shapes");
  const uint64_t *words = reinterpret_cast<const uint64_t *>(bits.typed_data());
  if (!with_sums) std::memset(gsum->typed_data(), 0, M * sizeof(*gsum->typed_data()));
  return check(masked_matmul_xt(x.typed_data(), g.typed_data(), words, counts.typed_data(), binary_flag(flags),
                                out->typed_data(), with_sums ? gsum->typed_data() : nullptr, N, K, M, nthreads));
}

}  // namespace

#define NP_MASKS(DT) ffi::Ffi::Bind().Arg<ffi::Buffer<DT>>().Ret<ffi::Buffer<ffi::DataType::U32>>() \
  .Ret<ffi::Buffer<ffi::DataType::S32>>().Ret<ffi::Buffer<ffi::DataType::S32>>().Attr<int32_t>("nthreads").Attr<int64_t>("max_nnz")
#define NP_MM(DT) ffi::Ffi::Bind().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>() \
  .Arg<ffi::Buffer<ffi::DataType::U32>>().Arg<ffi::Buffer<ffi::DataType::S32>>().Ret<ffi::Buffer<DT>>() \
  .Attr<int32_t>("nthreads").Attr<int32_t>("has_bias")
#define NP_MM_XT(DT) ffi::Ffi::Bind().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<ffi::DataType::U32>>() \
  .Arg<ffi::Buffer<ffi::DataType::S32>>().Arg<ffi::Buffer<ffi::DataType::S32>>().Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>().Attr<int32_t>("nthreads") \
  .Attr<int32_t>("with_sums")
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpSpikeMasksF32, (SpikeMasksFfi<ffi::DataType::F32>), NP_MASKS(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpSpikeMasksF64, (SpikeMasksFfi<ffi::DataType::F64>), NP_MASKS(ffi::DataType::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpEventMatmulF32, (MaskedMatmulFfi<ffi::DataType::F32>), NP_MM(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpEventMatmulF64, (MaskedMatmulFfi<ffi::DataType::F64>), NP_MM(ffi::DataType::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpEventMatmulXtF32, (MaskedMatmulXtFfi<ffi::DataType::F32>), NP_MM_XT(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpEventMatmulXtF64, (MaskedMatmulXtFfi<ffi::DataType::F64>), NP_MM_XT(ffi::DataType::F64));
#endif
