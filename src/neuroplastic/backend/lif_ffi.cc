// XLA FFI handlers for the LIF loops of lif_loops.c (which native.lif_library_ffi puts before this text):
// the JAX backend's fused LIF kernel on the CPU (kernels_jax.py).
//
//   forward:  currents (T, n), v0 (n)  ->  spikes (T, n), v_last (n), u (T, n)        (u: pre-reset membrane)
//   backward: u (T, n), slope (T, n), g_spikes (T, n), g_v_last (n)  ->  g_currents (T, n), g_v0 (n)
//   backward, fast sigmoid: u (T, n), g_spikes (T, n), g_v_last (n)  ->  g_currents (T, n), g_v0 (n)
//
// n is the batch times the neurons (the loops treat every neuron independently); slope is the
// surrogate's derivative at u - threshold, computed by XLA before the call; for the fast sigmoid
// 1 / (1 + beta |u - threshold|)^2 the loop computes it itself (attribute beta).

#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

template <typename T> struct Loops;
template <> struct Loops<float> {
  static void forward(const float *c, const float *v0, float *u, float *z, float *va, float *vb, int64_t T, int64_t n, double a,
                      double th, int reset, int threads) { lif_forward_f(c, v0, u, z, va, vb, T, n, a, th, reset, threads); }
  static void backward(const float *u, const float *s, const float *gz, float *dI, float *g, int64_t T, int64_t n, double a,
                       double th, int reset, int detach, double beta, int threads) {
    lif_backward_f(u, s, gz, dI, g, 1, T, n, a, th, reset, detach, beta, threads);
  }
};
template <> struct Loops<double> {
  static void forward(const double *c, const double *v0, double *u, double *z, double *va, double *vb, int64_t T, int64_t n,
                      double a, double th, int reset, int threads) { lif_forward_d(c, v0, u, z, va, vb, T, n, a, th, reset, threads); }
  static void backward(const double *u, const double *s, const double *gz, double *dI, double *g, int64_t T, int64_t n, double a,
                       double th, int reset, int detach, double beta, int threads) {
    lif_backward_d(u, s, gz, dI, g, 1, T, n, a, th, reset, detach, beta, threads);
  }
};

template <ffi::DataType DT>
ffi::Error LifForward(ffi::Buffer<DT> currents, ffi::Buffer<DT> v0, ffi::ResultBuffer<DT> spikes, ffi::ResultBuffer<DT> v_last,
                      ffi::ResultBuffer<DT> u, double alpha, double threshold, int32_t reset, int32_t threads) {
  typedef ffi::NativeType<DT> T;
  const auto d = currents.dimensions();
  if (d.size() != 2 || v0.element_count() != static_cast<size_t>(d[1]))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "lif_forward: currents must be (T, n) and v0 (n)");
  const int64_t steps = d[0], n = d[1];
  if (steps == 0) {
    std::memcpy(v_last->typed_data(), v0.typed_data(), n * sizeof(T));
    return ffi::Error::Success();
  }
  std::vector<T> scratch(n);  // the loops alternate between v_last and this buffer, ending in v_last
  Loops<T>::forward(currents.typed_data(), v0.typed_data(), u->typed_data(), spikes->typed_data(), v_last->typed_data(),
                    scratch.data(), steps, n, alpha, threshold, reset, threads);
  return ffi::Error::Success();
}

// both backward handlers: slope is the slope array's data, or nullptr for the fast sigmoid (then beta is used)
template <ffi::DataType DT>
ffi::Error Backward(ffi::Buffer<DT> &u, const ffi::NativeType<DT> *slope, ffi::Buffer<DT> &g_spikes, ffi::Buffer<DT> &g_v_last,
                    ffi::ResultBuffer<DT> &g_currents, ffi::ResultBuffer<DT> &g_v0, double alpha, double threshold,
                    int32_t reset, int32_t detach, double beta, int32_t threads) {
  typedef ffi::NativeType<DT> T;
  const auto d = u.dimensions();
  if (d.size() != 2 || g_v_last.element_count() != static_cast<size_t>(d[1]))
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "lif_backward: u must be (T, n) and g_v_last (n)");
  const int64_t steps = d[0], n = d[1];
  T *g = g_v0->typed_data();  // dL/dv_t, from the last step back to v0
  std::memcpy(g, g_v_last.typed_data(), n * sizeof(T));
  if (steps > 0)
    Loops<T>::backward(u.typed_data(), slope, g_spikes.typed_data(), g_currents->typed_data(), g, steps, n, alpha, threshold,
                       reset, detach, beta, threads);
  return ffi::Error::Success();
}

template <ffi::DataType DT>
ffi::Error LifBackward(ffi::Buffer<DT> u, ffi::Buffer<DT> slope, ffi::Buffer<DT> g_spikes, ffi::Buffer<DT> g_v_last,
                       ffi::ResultBuffer<DT> g_currents, ffi::ResultBuffer<DT> g_v0, double alpha, double threshold,
                       int32_t reset, int32_t detach, int32_t threads) {
  return Backward<DT>(u, slope.typed_data(), g_spikes, g_v_last, g_currents, g_v0, alpha, threshold, reset, detach, 0.0, threads);
}

template <ffi::DataType DT>
ffi::Error LifBackwardFastSigmoid(ffi::Buffer<DT> u, ffi::Buffer<DT> g_spikes, ffi::Buffer<DT> g_v_last,
                                  ffi::ResultBuffer<DT> g_currents, ffi::ResultBuffer<DT> g_v0, double alpha, double threshold,
                                  int32_t reset, int32_t detach, double beta, int32_t threads) {
  return Backward<DT>(u, nullptr, g_spikes, g_v_last, g_currents, g_v0, alpha, threshold, reset, detach, beta, threads);
}

}  // namespace

#define NP_LIF_FWD(DT) ffi::Ffi::Bind().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>() \
  .Ret<ffi::Buffer<DT>>().Attr<double>("alpha").Attr<double>("threshold").Attr<int32_t>("reset").Attr<int32_t>("threads")
#define NP_LIF_BWD(DT) ffi::Ffi::Bind().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>() \
  .Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>().Attr<double>("alpha").Attr<double>("threshold").Attr<int32_t>("reset")          \
  .Attr<int32_t>("detach").Attr<int32_t>("threads")
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpLifForwardF32, LifForward<ffi::DataType::F32>, NP_LIF_FWD(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpLifForwardF64, LifForward<ffi::DataType::F64>, NP_LIF_FWD(ffi::DataType::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpLifBackwardF32, LifBackward<ffi::DataType::F32>, NP_LIF_BWD(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpLifBackwardF64, LifBackward<ffi::DataType::F64>, NP_LIF_BWD(ffi::DataType::F64));
#define NP_LIF_BWD_FS(DT) ffi::Ffi::Bind().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>()             \
  .Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>().Attr<double>("alpha").Attr<double>("threshold").Attr<int32_t>("reset")          \
  .Attr<int32_t>("detach").Attr<double>("beta").Attr<int32_t>("threads")
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpLifBackwardFastSigmoidF32, LifBackwardFastSigmoid<ffi::DataType::F32>, NP_LIF_BWD_FS(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(NpLifBackwardFastSigmoidF64, LifBackwardFastSigmoid<ffi::DataType::F64>, NP_LIF_BWD_FS(ffi::DataType::F64));
