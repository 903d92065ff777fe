// Event-driven products of a mostly-zero (spike) matrix x with a dense matrix.
//
//   forward:            out (N x M) = x (N x K) @ w (K x M)
//   weight gradient:    out (K x M) = x (N x K)^T @ g (N x M)
//
// Only the non-zero entries of x are visited: a row's non-zeros are listed once (CSR: column
// index and value), and each adds value * (a row of w) into the output row -- for a binary
// spike matrix at density p that is p * N * K * M multiply-adds instead of N * K * M.
//
// Cache layout: the dense operand is cut into column chunks of 256 bytes (64 floats / 32
// doubles) stored as contiguous panels (chunk, row, 256 bytes), so a gathered row of a chunk
// is 4 adjacent cache lines and a panel of a 2048-row matrix (512 KiB) stays in L2; a
// row's accumulators for one chunk are 8 vector registers.  Rows of x whose width is a
// power of two would otherwise map the gathered rows of w onto a few cache sets.
//
// Order of the sums: each output element is summed over the non-zeros of x in increasing
// index order (k for the forward, n for the weight gradient), by one thread; the result
// therefore does not depend on the number of threads.  It differs from a dense GEMM's
// blocked order by rounding only.
//
// Three steps, so that the masks of x's non-zeros are computed once per product and reused: the masks
// and row counts (one read of x: the caller decides from the total whether a dense product is faster),
// the forward from the masks, the weight gradient from the same masks.  Entry points: plain C functions
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

typedef float vf __attribute__((vector_size(32), aligned(4)));
typedef double vd __attribute__((vector_size(32), aligned(8)));
template <typename T> struct Vec;
template <> struct Vec<float> { typedef vf type; };
template <> struct Vec<double> { typedef vd type; };

constexpr int64_t kChunkBytes = 256;  // 8 vectors of 32 bytes
constexpr int64_t kRowBlock = 256;    // rows of x per forward tile

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

template <typename T>
struct Csr {
  std::vector<int64_t> start;  // N + 1
  std::vector<int32_t> index;  // nnz
  std::vector<T> value;        // nnz
};

// Bit j of the result: whether p[j] != 0 (len <= 64).  `!=` as in C: NaN counts as non-zero, -0 as zero.
// lane_bits(q) gives the bits of Lanes entries at q at once (a vector compare); the tail goes one by one.
template <int Lanes, typename T, typename F>
inline uint64_t nonzero_bits_by(const T *p, int64_t len, F lane_bits) {
  uint64_t m = 0;
  int64_t j = 0;
  for (; j + Lanes <= len; j += Lanes) m |= static_cast<uint64_t>(lane_bits(p + j)) << j;
  for (; j < len; ++j) m |= static_cast<uint64_t>(p[j] != T(0)) << j;
  return m;
}

inline uint64_t nonzero_bits(const float *p, int64_t len) {
#if defined(__AVX512F__)
  return nonzero_bits_by<16>(p, len, [](const float *q) { return _mm512_cmp_ps_mask(_mm512_loadu_ps(q), _mm512_setzero_ps(), _CMP_NEQ_UQ); });
#elif defined(__AVX__)
  return nonzero_bits_by<8>(p, len, [](const float *q) { return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(q), _mm256_setzero_ps(), _CMP_NEQ_UQ)); });
#else
  return nonzero_bits_by<1>(p, len, [](const float *q) { return *q != 0.0f; });
#endif
}

inline uint64_t nonzero_bits(const double *p, int64_t len) {
#if defined(__AVX512F__)
  return nonzero_bits_by<8>(p, len, [](const double *q) { return _mm512_cmp_pd_mask(_mm512_loadu_pd(q), _mm512_setzero_pd(), _CMP_NEQ_UQ); });
#elif defined(__AVX__)
  return nonzero_bits_by<4>(p, len, [](const double *q) { return _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(q), _mm256_setzero_pd(), _CMP_NEQ_UQ)); });
#else
  return nonzero_bits_by<1>(p, len, [](const double *q) { return *q != 0.0; });
#endif
}

// The non-zeros of each row of x (N x K), in increasing column order, in two passes over row blocks.
// nonzero_masks reads x once into bit masks (words of 64 columns, W = ceil(K / 64) a row) and counts each
// row's non-zeros; returns the total.  The masks and counts can be kept and reused (the JAX path computes
// them once for the forward's density check, its product and the weight gradient).
template <typename T>
int64_t nonzero_masks(const T *x, int64_t N, int64_t K, uint64_t *bits, int32_t *counts, int nthreads) {
  const int64_t W = (K + 63) / 64, nblocks = (N + kRowBlock - 1) / kRowBlock;
  std::vector<int64_t> block_total(nblocks, 0);
  parallel_for(nblocks, nthreads, [&](int64_t b) {
    const int64_t n1 = (b + 1) * kRowBlock < N ? (b + 1) * kRowBlock : N;
    int64_t total = 0;
    for (int64_t n = b * kRowBlock; n < n1; ++n) {
      int32_t count = 0;
      for (int64_t w = 0; w < W; ++w) {
        const int64_t k0 = w * 64;
        const uint64_t m = nonzero_bits(x + n * K + k0, K - k0 < 64 ? K - k0 : 64);
        bits[n * W + w] = m;
        count += __builtin_popcountll(m);
      }
      counts[n] = count;
      total += count;
    }
    block_total[b] = total;
  });
  int64_t nnz = 0;
  for (int64_t t : block_total) nnz += t;
  return nnz;
}

// The CSR lists from the masks: the set bits in order (no branch per zero entry), x read only at the non-zeros.
template <typename T>
void csr_from_masks(const T *x, int64_t N, int64_t K, const uint64_t *bits, const int32_t *counts, Csr<T> &c,
                    int nthreads) {
  const int64_t W = (K + 63) / 64, nblocks = (N + kRowBlock - 1) / kRowBlock;
  c.start.assign(N + 1, 0);
  for (int64_t n = 0; n < N; ++n) c.start[n + 1] = c.start[n] + counts[n];
  c.index.resize(c.start[N]);
  c.value.resize(c.start[N]);
  parallel_for(nblocks, nthreads, [&](int64_t b) {
    const int64_t n1 = (b + 1) * kRowBlock < N ? (b + 1) * kRowBlock : N;
    for (int64_t n = b * kRowBlock; n < n1; ++n) {
      const T *row = x + n * K;
      int64_t p = c.start[n];
      for (int64_t w = 0; w < W; ++w) {
        for (uint64_t m = bits[n * W + w]; m; m &= m - 1) {
          const int32_t k = static_cast<int32_t>(w * 64 + __builtin_ctzll(m));
          c.index[p] = k;
          c.value[p++] = row[k];
        }
      }
    }
  });
}

// a (R x M) cut into zero-padded column chunks: panel[(chunk * R + r) * CW + j].
template <typename T>
std::vector<T> pack_panels(const T *a, int64_t R, int64_t M, int nthreads) {
  constexpr int64_t CW = kChunkBytes / sizeof(T);
  const int64_t nchunks = (M + CW - 1) / CW;
  std::vector<T> panel(nchunks * R * CW, T(0));
  parallel_for(nchunks, nthreads, [&](int64_t c) {
    const int64_t j0 = c * CW, width = M - j0 < CW ? M - j0 : CW;
    for (int64_t r = 0; r < R; ++r) std::memcpy(&panel[(c * R + r) * CW], a + r * M + j0, width * sizeof(T));
  });
  return panel;
}

// out (N x M) = x @ w (+ bias (M), when not null: added to each finished sum, the rounding of a separate
// addition, without a second pass over out), x given by its CSR lists.
template <typename T>
void csr_matmul(const Csr<T> &c, const T *w, const T *bias, T *out, int64_t N, int64_t K, int64_t M, int nthreads) {
  typedef typename Vec<T>::type V;
  constexpr int64_t CW = kChunkBytes / sizeof(T);
  const std::vector<T> panel = pack_panels(w, K, M, nthreads);
  const int64_t nchunks = (M + CW - 1) / CW, nblocks = (N + kRowBlock - 1) / kRowBlock;
  parallel_for(nchunks * nblocks, nthreads, [&](int64_t tile) {
    const int64_t chunk = tile / nblocks, b = tile % nblocks;
    const int64_t j0 = chunk * CW, width = M - j0 < CW ? M - j0 : CW;
    const T *P = panel.data() + chunk * K * CW;
    const int64_t n1 = (b + 1) * kRowBlock < N ? (b + 1) * kRowBlock : N;
    V bv[8] = {};
    if (bias) std::memcpy(bv, bias + j0, width * sizeof(T));
    for (int64_t n = b * kRowBlock; n < n1; ++n) {
      V a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {}, a6 = {}, a7 = {};
      for (int64_t p = c.start[n]; p < c.start[n + 1]; ++p) {
        const T v = c.value[p];
        const V *r = reinterpret_cast<const V *>(P + static_cast<int64_t>(c.index[p]) * CW);
        a0 += v * r[0]; a1 += v * r[1]; a2 += v * r[2]; a3 += v * r[3];
        a4 += v * r[4]; a5 += v * r[5]; a6 += v * r[6]; a7 += v * r[7];
      }
      V acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
      if (bias)
        for (int i = 0; i < 8; ++i) acc[i] += bv[i];
      std::memcpy(out + n * M + j0, acc, width * sizeof(T));
    }
  });
}

// out (K x M) = x^T @ g (N x M), x given by its CSR lists.
template <typename T>
void csr_matmul_xt(const Csr<T> &c, const T *g, T *out, int64_t N, int64_t K, int64_t M, int nthreads) {
  typedef typename Vec<T>::type V;
  constexpr int64_t CW = kChunkBytes / sizeof(T);
  const int64_t nchunks = (M + CW - 1) / CW;
  std::vector<T> panel(nchunks * K * CW, T(0));
  parallel_for(nchunks, nthreads, [&](int64_t chunk) {
    const int64_t j0 = chunk * CW, width = M - j0 < CW ? M - j0 : CW;
    T *P = panel.data() + chunk * K * CW;
    V grow[8] = {};
    for (int64_t n = 0; n < N; ++n) {
      if (c.start[n] == c.start[n + 1]) continue;
      std::memcpy(grow, g + n * M + j0, width * sizeof(T));  // the rest stays zero
      const V g0 = grow[0], g1 = grow[1], g2 = grow[2], g3 = grow[3], g4 = grow[4], g5 = grow[5], g6 = grow[6], g7 = grow[7];
      for (int64_t p = c.start[n]; p < c.start[n + 1]; ++p) {
        const T v = c.value[p];
        V *d = reinterpret_cast<V *>(P + static_cast<int64_t>(c.index[p]) * CW);
        d[0] += v * g0; d[1] += v * g1; d[2] += v * g2; d[3] += v * g3;
        d[4] += v * g4; d[5] += v * g5; d[6] += v * g6; d[7] += v * g7;
      }
    }
    for (int64_t k = 0; k < K; ++k) std::memcpy(out + k * M + j0, P + k * CW, width * sizeof(T));
  });
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

// The entry points' three steps, each guarded, returning the number of non-zeros (or an error code).
template <typename T>
int64_t spike_masks(const T *x, uint64_t *bits, int32_t *counts, int64_t N, int64_t K, int nthreads) {
  return guarded([&] { return nonzero_masks(x, N, K, bits, counts, nthreads < 1 ? 1 : nthreads); });
}

template <typename T>
int64_t masked_matmul(const T *x, const T *w, const T *bias, const uint64_t *bits, const int32_t *counts, T *out,
                      int64_t N, int64_t K, int64_t M, int nthreads) {
  return guarded([&] {
    Csr<T> c;
    csr_from_masks(x, N, K, bits, counts, c, nthreads < 1 ? 1 : nthreads);
    csr_matmul(c, w, bias, out, N, K, M, nthreads < 1 ? 1 : nthreads);
    return c.start[N];
  });
}

template <typename T>
int64_t masked_matmul_xt(const T *x, const T *g, const uint64_t *bits, const int32_t *counts, T *out, int64_t N,
                         int64_t K, int64_t M, int nthreads) {
  return guarded([&] {
    Csr<T> c;
    csr_from_masks(x, N, K, bits, counts, c, nthreads < 1 ? 1 : nthreads);
    csr_matmul_xt(c, g, out, N, K, M, nthreads < 1 ? 1 : nthreads);
    return c.start[N];
  });
}

}  // namespace

// ctypes entry points, the same three steps as the XLA FFI handlers below.  np_spike_masks_* writes x's
// non-zero masks (N x ceil(K / 64) words) and row counts (N) and returns the total; np_masked_matmul_*
// computes out = x @ w (+ bias, unless null) and np_masked_matmul_xt_* out = x^T @ g from x and its masks.
// Negative returns: -1 when memory ran out, -2 on another failure.
#define NP_CTYPES(T, S)                                                                                           \
  int64_t np_spike_masks_##S(const T *x, uint64_t *bits, int32_t *counts, int64_t N, int64_t K, int nthreads) {   \
    return spike_masks(x, bits, counts, N, K, nthreads);                                                         \
  }                                                                                                               \
  int64_t np_masked_matmul_##S(const T *x, const T *w, const T *bias, const uint64_t *bits, const int32_t *counts,   \
                               T *out, int64_t N, int64_t K, int64_t M, int nthreads) {                           \
    return masked_matmul(x, w, bias, bits, counts, out, N, K, M, nthreads);                                       \
  }                                                                                                               \
  int64_t np_masked_matmul_xt_##S(const T *x, const T *g, const uint64_t *bits, const int32_t *counts, T *out,     \
                                  int64_t N, int64_t K, int64_t M, int nthreads) {                                \
    return masked_matmul_xt(x, g, bits, counts, out, N, K, M, nthreads);                                          \
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

// Whether bits (u32 (N, 2 ceil(K / 64))) and counts (s32 (N)) have the shapes of x's (N x K) masks.
bool mask_shapes(int64_t N, int64_t K, ffi::Span<const int64_t> bd, ffi::Span<const int64_t> cd) {
  return bd.size() == 2 && bd[0] == N && bd[1] == 2 * ((K + 63) / 64) && cd.size() == 1 && cd[0] == N;
}

// The masks of x's non-zeros (u32 (N, 2 W): each 64-column word as two 32-bit halves, low first, so that JAX
// holds them without 64-bit types), the count of each row (s32 (N)), and sparse (s32 scalar): 1 when the
// total is at most max_nnz.  One read of x; the products below take the masks instead of reading x again.
template <ffi::DataType DT>
ffi::Error SpikeMasksFfi(ffi::Buffer<DT> x, ffi::ResultBuffer<ffi::DataType::U32> bits,
                         ffi::ResultBuffer<ffi::DataType::S32> counts, ffi::ResultBuffer<ffi::DataType::S32> sparse,
                         int32_t nthreads, int64_t max_nnz) {
  const auto xd = x.dimensions();
  if (xd.size() != 2) return ffi::Error(ffi::ErrorCode::kInvalidArgument, "spike_masks: x must be 2-D");
  const int64_t N = xd[0], K = xd[1];
  if (!mask_shapes(N, K, bits->dimensions(), counts->dimensions()))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "spike_masks: the masks must be (N, 2 ceil(K / 64)), the counts (N)");
  uint64_t *words = reinterpret_cast<uint64_t *>(bits->typed_data());  // XLA's buffers are at least 16-byte aligned
  const int64_t r = spike_masks(x.typed_data(), words, counts->typed_data(), N, K, nthreads);
  sparse->typed_data()[0] = r >= 0 && r <= max_nnz ? 1 : 0;
  return check(r);
}

// out = x @ w (+ bias where has_bias), x's non-zeros given by SpikeMasksFfi's masks and counts.
template <ffi::DataType DT>
ffi::Error MaskedMatmulFfi(ffi::Buffer<DT> x, ffi::Buffer<DT> w, ffi::Buffer<DT> bias, ffi::Buffer<ffi::DataType::U32> bits,
                           ffi::Buffer<ffi::DataType::S32> counts, ffi::ResultBuffer<DT> out, int32_t nthreads,
                           int32_t has_bias) {
  const auto xd = x.dimensions(), wd = w.dimensions(), bd = bias.dimensions();
  if (xd.size() != 2 || wd.size() != 2 || wd[0] != xd[1])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "event_matmul: x (N, K) and w (K, M) must be 2-D with the same K");
  if (has_bias && (bd.size() != 1 || bd[0] != wd[1]))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "event_matmul: bias must be 1-D with M entries");
  const int64_t N = xd[0], K = xd[1], M = wd[1];
  if (!mask_shapes(N, K, bits.dimensions(), counts.dimensions()))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "event_matmul: the masks and counts do not have x's shapes");
  const uint64_t *words = reinterpret_cast<const uint64_t *>(bits.typed_data());
  return check(masked_matmul(x.typed_data(), w.typed_data(), has_bias ? bias.typed_data() : nullptr, words,
                             counts.typed_data(), out->typed_data(), N, K, M, nthreads));
}

// Weight gradient: out (K x M) = x (N x K)^T @ g (N x M), x's non-zeros given by the masks and counts.
template <ffi::DataType DT>
ffi::Error MaskedMatmulXtFfi(ffi::Buffer<DT> x, ffi::Buffer<DT> g, ffi::Buffer<ffi::DataType::U32> bits,
                             ffi::Buffer<ffi::DataType::S32> counts, ffi::ResultBuffer<DT> out, int32_t nthreads) {
  const auto xd = x.dimensions(), gd = g.dimensions();
  if (xd.size() != 2 || gd.size() != 2 || gd[0] != xd[0])
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "event_matmul_xt: x (N, K) and g (N, M) must be 2-D with the same N");
  const int64_t N = xd[0], K = xd[1], M = gd[1];
  if (!mask_shapes(N, K, bits.dimensions(), counts.dimensions()))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "event_matmul_xt: the masks and counts do not have x's shapes");
  const uint64_t *words = reinterpret_cast<const uint64_t *>(bits.typed_data());
  return check(masked_matmul_xt(x.typed_data(), g.typed_data(), words, counts.typed_data(), out->typed_data(), N, K, M,
                                nthreads));
}

}  // namespace

#define NP_MASKS(DT) ffi::Ffi::Bind().Arg<ffi::Buffer<DT>>().Ret<ffi::Buffer<ffi::DataType::U32>>() \
  .Ret<ffi::Buffer<ffi::DataType::S32>>().Ret<ffi::Buffer<ffi::DataType::S32>>().Attr<int32_t>("nthreads").Attr<int64_t>("max_nnz")
#define NP_MM(DT) ffi::Ffi::Bind().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>() \
  .Arg<ffi::Buffer<ffi::DataType::U32>>().Arg<ffi::Buffer<ffi::DataType::S32>>().Ret<ffi::Buffer<DT>>() \
  .Attr<int32_t>("nthreads").Attr<int32_t>("has_bias")
#define NP_MM_XT(DT) ffi::Ffi::Bind().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<ffi::DataType::U32>>() \
  .Arg<ffi::Buffer<ffi::DataType::S32>>().Ret<ffi::Buffer<DT>>().Attr<int32_t>("nthreads")
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpSpikeMasksF32, (SpikeMasksFfi<ffi::DataType::F32>), NP_MASKS(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpSpikeMasksF64, (SpikeMasksFfi<ffi::DataType::F64>), NP_MASKS(ffi::DataType::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpEventMatmulF32, (MaskedMatmulFfi<ffi::DataType::F32>), NP_MM(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpEventMatmulF64, (MaskedMatmulFfi<ffi::DataType::F64>), NP_MM(ffi::DataType::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpEventMatmulXtF32, (MaskedMatmulXtFfi<ffi::DataType::F32>), NP_MM_XT(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpEventMatmulXtF64, (MaskedMatmulXtFfi<ffi::DataType::F64>), NP_MM_XT(ffi::DataType::F64));
#endif
