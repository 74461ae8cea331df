#ifndef SLUICE_KERNELS_H
#define SLUICE_KERNELS_H

/* Float loops that need FMA and 256-bit vectors to keep up with onnxruntime's MLAS, which Swift
 * cannot enable per function: each kernel is compiled twice (for x86-64 with AVX2 and FMA, and
 * for the baseline target) and picked at run time from what the CPU supports. SluiceTensor wraps
 * them; its reference kernels are the plain twins the tests compare against. */

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the AVX2 + FMA versions are in use. */
int sluice_kernels_vectorized(void);

/* y[i] = exp(x[i] - shift); returns the sum of the y[i]. */
float sluice_exp_shifted_sum(const float *x, float *y, long n, float shift);
/* y[i] = f(x[i]); x and y may be the same memory. */
void sluice_exp(const float *x, float *y, long n);
void sluice_erf(const float *x, float *y, long n);
void sluice_tanh(const float *x, float *y, long n);
void sluice_sigmoid(const float *x, float *y, long n);
void sluice_gelu(const float *x, float *y, long n);
/* The largest of x[0..<n] (NaN if any is NaN; -inf for n = 0). */
float sluice_max(const float *x, long n);
/* y[i] *= s. */
void sluice_scale(float *y, long n, float s);

/* C = alpha * A * B + beta * C for row-major A [m, k] (row stride lda), B [k, n] (ldb) and
 * C [m, n] (ldc), beta 0 or 1, for few rows (m up to a few dozen): B is streamed once per
 * 16-column block while every row of A reuses it. */
void sluice_sgemm_small(long m, long n, long k, float alpha, const float *a, long lda, const float *b, long ldb,
                        float beta, float *c, long ldc);

/* B [k, n] (row stride ldb) rearranged into 16-column panels, each [k][16] and contiguous, the
 * last zero-padded: (n + 15) / 16 * 16 * k floats at `packed`. */
void sluice_pack_b(long k, long n, const float *b, long ldb, float *packed);

/* C = alpha * A * B + beta * C (beta 0 or 1) with B packed by sluice_pack_b: every panel is read
 * once, sequentially, for all rows of A. */
void sluice_sgemm_packed(long m, long n, long k, float alpha, const float *a, long lda, const float *packed, float beta,
                         float *c, long ldc);

#ifdef __cplusplus
}
#endif

#endif
