// CPU kernels of the truly sparse layers on torch's own intra-op thread pool (at::parallel_for).
//
// The same products as the numba kernels of lightning_sparse/nn/kernels.py, on feature-major
// dense operands (X^T of shape (features, batch), rows contiguous):
//   spmm(crow, col, values, perm, xt, bias, min_work, batch_major) -> (rows, batch) = A @ X^T (+ bias),
//       or with batch_major its transpose (batch, rows), strides (1, batch): the same memory, not a view
//   sddmm(crow, col, gt, xt, min_work)              -> (nnz,)  entry k = gt[row_k] . xt[col_k]
//   feature_major(x)                                -> x^T contiguous (a view when x is feature-major)
//   sparse_linear(...)                              -> SparseLinear's forward, with its backward (autograd)
// Index tensors are int32 or int64. Work is split into chunks of equal non-zero count (not equal rows), one per thread of torch's
// pool, so the kernels and torch's own ops share one set of threads; below `min_work`
// multiply-adds (nnz * batch) a call runs on the calling thread.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <cstdint>
#include <optional>

namespace {

using at::Tensor;

// Row ranges of about equal non-zero count: chunk t of `chunks` covers rows [bounds(t), bounds(t+1)).
template <typename I>
inline int64_t chunk_row(const I* crow, int64_t rows, int64_t t, int64_t chunks) {
  if (t >= chunks) return rows;
  const int64_t nnz = crow[rows];
  const I target = static_cast<I>(nnz * t / chunks);
  return std::lower_bound(crow, crow + rows, target) - crow;
}

template <typename I, typename F>
void for_row_chunks(const I* crow, int64_t rows, int64_t batch, int64_t min_work, const F& body) {
  const int64_t nnz = crow[rows];
  const int64_t work = nnz * batch;
  int64_t chunks = 1;
  if (work >= min_work && !at::in_parallel_region()) {
    chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
  }
  if (chunks == 1) {
    body(0, rows);
    return;
  }
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r0 = chunk_row(crow, rows, t, chunks);
      const int64_t r1 = chunk_row(crow, rows, t + 1, chunks);
      if (r1 > r0) body(r0, r1);
    }
  });
}

template <typename T, typename I>
void spmm_rows(const I* __restrict crow, const I* __restrict col, const T* __restrict vals,
               const I* __restrict perm, const T* __restrict xt, const T* __restrict bias,
               T* __restrict out, int64_t n, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    T* __restrict acc = out + r * n;
    const T b = bias ? bias[r] : T(0);
    for (int64_t j = 0; j < n; ++j) acc[j] = b;
    int64_t k = crow[r];
    const int64_t end = crow[r + 1];
    // Four non-zeros per pass over the output row: a quarter of the loads/stores of `acc`.
    for (; k + 4 <= end; k += 4) {
      const T v0 = perm ? vals[perm[k]] : vals[k];
      const T v1 = perm ? vals[perm[k + 1]] : vals[k + 1];
      const T v2 = perm ? vals[perm[k + 2]] : vals[k + 2];
      const T v3 = perm ? vals[perm[k + 3]] : vals[k + 3];
      const T* __restrict s0 = xt + col[k] * n;
      const T* __restrict s1 = xt + col[k + 1] * n;
      const T* __restrict s2 = xt + col[k + 2] * n;
      const T* __restrict s3 = xt + col[k + 3] * n;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) acc[j] += v0 * s0[j] + v1 * s1[j] + v2 * s2[j] + v3 * s3[j];
    }
    for (; k < end; ++k) {
      const T v = perm ? vals[perm[k]] : vals[k];
      const T* __restrict s = xt + col[k] * n;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) acc[j] += v * s[j];
    }
  }
}

template <typename T, typename I>
void sddmm_rows(const I* __restrict crow, const I* __restrict col, const T* __restrict gt,
                const T* __restrict xt, T* __restrict out, int64_t n, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict g = gt + r * n;
    int64_t k = crow[r];
    const int64_t end = crow[r + 1];
    // Four non-zeros of one row per pass: the gradient row is loaded once for four dots.
    for (; k + 4 <= end; k += 4) {
      const T* __restrict x0 = xt + col[k] * n;
      const T* __restrict x1 = xt + col[k + 1] * n;
      const T* __restrict x2 = xt + col[k + 2] * n;
      const T* __restrict x3 = xt + col[k + 3] * n;
      T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
      for (int64_t j = 0; j < n; ++j) {
        const T gj = g[j];
        a0 += gj * x0[j];
        a1 += gj * x1[j];
        a2 += gj * x2[j];
        a3 += gj * x3[j];
      }
      out[k] = a0;
      out[k + 1] = a1;
      out[k + 2] = a2;
      out[k + 3] = a3;
    }
    for (; k < end; ++k) {
      const T* __restrict x = xt + col[k] * n;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < n; ++j) s += g[j] * x[j];
      out[k] = s;
    }
  }
}

void check_structure(const Tensor& crow, const Tensor& col) {
  TORCH_CHECK(crow.device().is_cpu() && col.device().is_cpu(), "sparse kernels: CPU tensors only");
  TORCH_CHECK((crow.scalar_type() == at::kLong || crow.scalar_type() == at::kInt) &&
                  col.scalar_type() == crow.scalar_type(),
              "sparse kernels: crow/col must be int32 or int64, of one dtype");
  TORCH_CHECK(crow.dim() == 1 && crow.numel() >= 1 && col.dim() == 1, "sparse kernels: bad CSR structure");
  TORCH_CHECK(crow.is_contiguous() && col.is_contiguous(), "sparse kernels: crow/col must be contiguous");
}

Tensor spmm(const Tensor& crow, const Tensor& col, const Tensor& values, const std::optional<Tensor>& perm,
            const Tensor& xt_in, const std::optional<Tensor>& bias, int64_t min_work, bool batch_major) {
  check_structure(crow, col);
  TORCH_CHECK(xt_in.dim() == 2 && xt_in.scalar_type() == values.scalar_type(), "spmm: xt must be 2-D, values' dtype");
  TORCH_CHECK(values.is_contiguous() && values.device().is_cpu(), "spmm: values must be a contiguous CPU tensor");
  const Tensor xt = xt_in.contiguous();
  const int64_t rows = crow.numel() - 1;
  const int64_t n = xt.size(1);
  Tensor out = batch_major ? at::empty_strided({n, rows}, {1, n}, values.options()) : at::empty({rows, n}, values.options());
  if (out.numel() == 0) return out;
  if (perm.has_value()) {
    TORCH_CHECK(perm->scalar_type() == col.scalar_type() && perm->is_contiguous() && perm->numel() == col.numel(),
                "spmm: perm must be contiguous, of col's dtype and length");
  }
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == values.scalar_type() && bias->is_contiguous() && bias->numel() == rows,
                "spmm: bias must be contiguous, of values' dtype, one per row");
  }
  AT_DISPATCH_INDEX_TYPES(crow.scalar_type(), "lightning_sparse_spmm_index", [&] {
    const index_t* crow_p = crow.data_ptr<index_t>();
    const index_t* col_p = col.data_ptr<index_t>();
    const index_t* perm_p = perm.has_value() ? perm->data_ptr<index_t>() : nullptr;
    AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "lightning_sparse_spmm", [&] {
      const scalar_t* vals_p = values.data_ptr<scalar_t>();
      const scalar_t* xt_p = xt.data_ptr<scalar_t>();
      const scalar_t* bias_p = bias.has_value() ? bias->data_ptr<scalar_t>() : nullptr;
      scalar_t* out_p = out.data_ptr<scalar_t>();
      for_row_chunks(crow_p, rows, n, min_work, [&](int64_t r0, int64_t r1) {
        spmm_rows<scalar_t, index_t>(crow_p, col_p, vals_p, perm_p, xt_p, bias_p, out_p, n, r0, r1);
      });
    });
  });
  return out;
}

Tensor sddmm(const Tensor& crow, const Tensor& col, const Tensor& gt_in, const Tensor& xt_in, int64_t min_work) {
  check_structure(crow, col);
  TORCH_CHECK(gt_in.dim() == 2 && xt_in.dim() == 2 && gt_in.scalar_type() == xt_in.scalar_type() &&
                  gt_in.size(1) == xt_in.size(1),
              "sddmm: gt and xt must be 2-D of one dtype and batch");
  const Tensor gt = gt_in.contiguous();
  const Tensor xt = xt_in.contiguous();
  const int64_t rows = crow.numel() - 1;
  const int64_t n = gt.size(1);
  Tensor out = at::empty({col.numel()}, gt.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_INDEX_TYPES(crow.scalar_type(), "lightning_sparse_sddmm_index", [&] {
    const index_t* crow_p = crow.data_ptr<index_t>();
    const index_t* col_p = col.data_ptr<index_t>();
    AT_DISPATCH_FLOATING_TYPES(gt.scalar_type(), "lightning_sparse_sddmm", [&] {
      const scalar_t* gt_p = gt.data_ptr<scalar_t>();
      const scalar_t* xt_p = xt.data_ptr<scalar_t>();
      scalar_t* out_p = out.data_ptr<scalar_t>();
      for_row_chunks(crow_p, rows, n, min_work, [&](int64_t r0, int64_t r1) {
        sddmm_rows<scalar_t, index_t>(crow_p, col_p, gt_p, xt_p, out_p, n, r0, r1);
      });
    });
  });
  return out;
}

// x^T made contiguous. 8 x 8 blocks (eight rows of x read, eight rows of x^T written: eight cache
// lines each side, so no row stride, even a multiple of 4 KiB, makes them evict each other), walked
// down a band of eight output rows; bands in parallel above `kParallelTranspose` elements. For float
// with AVX2 a block is transposed in registers. torch's strided copy of a transposed float matrix
// is several times slower and single-threaded.
constexpr int64_t kParallelTranspose = int64_t(1) << 17;

template <typename T>
inline void transpose_block(const T* __restrict src, int64_t s0, int64_t s1, T* __restrict dst, int64_t n,
                            int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; ++j) {
    T* __restrict d = dst + j * n;
    for (int64_t i = i0; i < i1; ++i) d[i] = src[i * s0 + j * s1];
  }
}

#if defined(__AVX2__)
inline void transpose8x8(const float* __restrict src, int64_t s0, float* __restrict dst, int64_t n) {
  __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + s0), r2 = _mm256_loadu_ps(src + 2 * s0),
         r3 = _mm256_loadu_ps(src + 3 * s0), r4 = _mm256_loadu_ps(src + 4 * s0),
         r5 = _mm256_loadu_ps(src + 5 * s0), r6 = _mm256_loadu_ps(src + 6 * s0),
         r7 = _mm256_loadu_ps(src + 7 * s0);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
         t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
         t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
         u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
         u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
         u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + n, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * n, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * n, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * n, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * n, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * n, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * n, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

template <typename T>
void transpose_band(const T* __restrict src, int64_t s0, int64_t s1, T* __restrict dst, int64_t n, int64_t j0,
                    int64_t j1) {
  constexpr int64_t B = 8;
  const int64_t i_full = n - n % B;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    if (s1 == 1 && j1 - j0 == B) {
      for (int64_t i = 0; i < i_full; i += B) transpose8x8(src + i * s0 + j0, s0, dst + j0 * n + i, n);
      transpose_block(src, s0, s1, dst, n, i_full, n, j0, j1);
      return;
    }
  }
#endif
  for (int64_t i = 0; i < n; i += B) transpose_block(src, s0, s1, dst, n, i, std::min(i + B, n), j0, j1);
}

Tensor feature_major(const Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.device().is_cpu(), "feature_major: a 2-D CPU tensor");
  const int64_t n = x.size(0), f = x.size(1);
  if (x.stride(0) == 1 && x.stride(1) == n) return x.t();  // already feature-major memory: a view, no copy
  Tensor out = at::empty({f, n}, x.options());
  if (out.numel() == 0) return out;
  const int64_t s0 = x.stride(0), s1 = x.stride(1);
  constexpr int64_t B = 8;
  const int64_t bands = (f + B - 1) / B;  // band b: output rows (features) [8b, 8b + 8)
  AT_DISPATCH_ALL_TYPES(x.scalar_type(), "lightning_sparse_feature_major", [&] {
    const scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    const auto run = [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) transpose_band(src, s0, s1, dst, n, b * B, std::min(b * B + B, f));
    };
    if (n * f < kParallelTranspose || at::in_parallel_region()) {
      run(0, bands);
    } else {
      at::parallel_for(0, bands, 1, run);
    }
  });
  return out;
}

// SparseLinear's forward and backward as one autograd op (no Python between the kernels):
//   sparse_linear(x (N, in), values, bias?, crow, col, t_crow, t_col, t_perm, min_work, contiguous_output)
//     -> (N, out) = x W^T + b, in feature-major memory (strides (1, N)), or contiguous with
//        contiguous_output; t_* is the CSR of W^T with t_perm mapping its non-zeros to `values`.
// Backward: grad_x = g W (the CSR of W^T), grad_values = (g^T x) at the non-zeros, grad_b = sum of g.
class SparseLinearFunction : public torch::autograd::Function<SparseLinearFunction> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& values,
                        const std::optional<Tensor>& bias, const Tensor& crow, const Tensor& col, const Tensor& t_crow,
                        const Tensor& t_col, const Tensor& t_perm, int64_t min_work, bool contiguous_output) {
    TORCH_CHECK(x.dim() == 2 && x.scalar_type() == values.scalar_type(),
                "sparse_linear: x must be 2-D (N, in_features), of values' dtype");
    const Tensor xt = feature_major(x);  // (in, N)
    Tensor y = spmm(crow, col, values, std::nullopt, xt, bias, min_work, !contiguous_output);
    if (contiguous_output) y = feature_major(y);  // the (out, N) product transposed: (N, out) contiguous
    ctx->save_for_backward({xt, values, crow, col, t_crow, t_col, t_perm});
    ctx->saved_data["min_work"] = min_work;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();  // else `bias` has no input edge
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &xt = saved[0], &values = saved[1], &crow = saved[2], &col = saved[3];
    const Tensor &t_crow = saved[4], &t_col = saved[5], &t_perm = saved[6];
    const int64_t min_work = ctx->saved_data["min_work"].toInt();
    Tensor g = grads[0];
    if (g.scalar_type() != values.scalar_type()) g = g.to(values.scalar_type());  // e.g. a bfloat16 gradient
    const Tensor gt = feature_major(g);  // (out, N); a view when g is feature-major
    Tensor grad_x, grad_values, grad_bias;
    if (ctx->needs_input_grad(0)) grad_x = spmm(t_crow, t_col, values, t_perm, gt, std::nullopt, min_work, true);
    if (ctx->needs_input_grad(1)) grad_values = sddmm(crow, col, gt, xt, min_work);
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) grad_bias = gt.sum(1);
    return {grad_x, grad_values, grad_bias, Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor sparse_linear(const Tensor& x, const Tensor& values, const std::optional<Tensor>& bias, const Tensor& crow,
                     const Tensor& col, const Tensor& t_crow, const Tensor& t_col, const Tensor& t_perm,
                     int64_t min_work, bool contiguous_output) {
  return SparseLinearFunction::apply(x, values, bias, crow, col, t_crow, t_col, t_perm, min_work, contiguous_output);
}

}  // namespace

TORCH_LIBRARY(lightning_sparse, m) {
  m.def("spmm(Tensor crow, Tensor col, Tensor values, Tensor? perm, Tensor xt, Tensor? bias, int min_work, bool batch_major) -> Tensor");
  m.def("sddmm(Tensor crow, Tensor col, Tensor gt, Tensor xt, int min_work) -> Tensor");
  m.def("feature_major(Tensor x) -> Tensor");
  m.def("sparse_linear(Tensor x, Tensor values, Tensor? bias, Tensor crow, Tensor col, Tensor t_crow, Tensor t_col, "
        "Tensor t_perm, int min_work, bool contiguous_output) -> Tensor");
}

TORCH_LIBRARY_IMPL(lightning_sparse, CPU, m) {
  m.impl("spmm", &spmm);
  m.impl("sddmm", &sddmm);
  m.impl("feature_major", &feature_major);
}

TORCH_LIBRARY_IMPL(lightning_sparse, CompositeImplicitAutograd, m) { m.impl("sparse_linear", &sparse_linear); }
