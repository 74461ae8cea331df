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

/* The instruction set in use: 2 for AVX-512 (the packed product, and the direct convolution except
 * on AMD Zen 4, where its AVX2 build is faster; the rest stays AVX2), 1 for AVX2 + FMA, 0 for the
 * baseline build. The most the CPU runs, unless
 * the environment variable SLUICE_KERNELS (avx2 or baseline) asks for less, which lets a
 * benchmark compare the levels on one machine. */
int sluice_kernels_level(void);
/* Caps sluice_kernels_level() at `cap` on the calling thread only (-1 lifts the cap): tests run one
 * model at every level in one process this way. */
void sluice_kernels_cap_thread(int cap);
/* 1 when the AVX2 + FMA versions (or better) are in use. */
int sluice_kernels_vectorized(void);
/* Whether the CPU runs AVX-512 (F and VL), whatever these kernels use. */
int sluice_cpu_has_avx512(void);

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
/* The same with the kernels of one instruction level (at most sluice_kernels_level()), so that the
 * tests check every build the CPU can run against the reference. */
void sluice_sgemm_packed_at(int level, long m, long n, long k, float alpha, const float *a, long lda,
                            const float *packed, float beta, float *c, long ldc);

/* Layer normalization of `rows` rows of `cols` floats (of x, or of x + residual when residual is
 * not NULL): y = (v - mean) / sqrt(var + eps) * scale + bias (scale and bias may be NULL), with
 * each row's mean and 1 / sqrt(var + eps) written to mean and inv unless NULL. y may be x. */
void sluice_layernorm(const float *x, const float *residual, long rows, long cols, const float *scale, const float *bias,
                      float eps, float *y, float *mean, float *inv);

/* Stride-1, dilation-1 1-D convolution of `batch` samples, computed directly (no im2col) with the
 * kernels of instruction level `level` (normally sluice_conv1d_level(); any level up to
 * sluice_kernels_level() in tests):
 * y[s, o, t] = epilogue(Σ_c Σ_j w[o, c, j] · x[s, c, t + j]) for o < m, t < positions, with w
 * [m, channels, k] as ONNX stores it and y [batch, m, positions]. x holds each sample's input
 * already padded: channel rows ldx floats apart (ldx at least sluice_conv1d_padded_row(positions,
 * k), the row's padding zeros) and samples x_sample floats apart. The epilogue is
 * ((v + bias[o]) · scale[o] + shift[o]), each term only when not NULL, then Relu when relu is
 * nonzero; each step rounds separately, as the unfused nodes do. */
void sluice_conv1d_at(int level, long batch, long m, long channels, long k, long positions, const float *w,
                      const float *x, long ldx, long x_sample, float *y, const float *bias, const float *scale,
                      const float *shift, int relu);
/* The level the convolution should use: sluice_kernels_level(), but AVX2 on AMD Zen 4 (see
 * kernels.c). */
int sluice_conv1d_level(void);
/* The floats a padded input row must hold for sluice_conv1d_at: whole 32-position blocks are read. */
long sluice_conv1d_padded_row(long positions, long k);

/* row[i] = max(row[i], tap[i * stride]) for i < n, NaN when either is NaN (max pooling's taps). */
void sluice_max_into(float *row, const float *tap, long stride, long n);

/* Narrowing float32 activations for a slow link (narrow.c). Half precision rounds to nearest
 * even exactly as IEEE 754 says (F16C where the CPU has it and the calling thread's level is 1 or
 * more, a portable conversion otherwise: the two agree bit for bit). */
void sluice_to_half(const float *x, unsigned short *y, long n);
void sluice_from_half(const unsigned short *x, float *y, long n);
/* The largest |x[i]| (NaN if any is NaN; 0 for n = 0). */
float sluice_max_abs(const float *x, long n);
/* y[i] = clamp(round_to_nearest_even(x[i] * inverse_scale), -127, 127); back: x[i] * scale. */
void sluice_to_int8(const float *x, signed char *y, long n, float inverse_scale);
void sluice_from_int8(const signed char *x, float *y, long n, float scale);
/* Add Σ (exact[i] - x̃[i])² to *error and Σ exact[i]² to *norm, in double, where x̃[i] is the
 * narrowed value widened back (halves[i] as a float; q[i] * scale): narrowing's cost, without a
 * widened copy. */
void sluice_half_squared_error(const float *exact, const unsigned short *halves, long n, double *error, double *norm);
void sluice_int8_squared_error(const float *exact, const signed char *q, long n, float scale, double *error, double *norm);

#ifdef __cplusplus
}
#endif

#endif

/* One node of a compiled tree ensemble (Forest.swift), 16 bytes. A branch's false child is the
 * node right after it. */
typedef struct {
    float threshold;
    int feature;       /* a branch: the feature it reads; a leaf: how many weights it has */
    int true_child;    /* a branch: its true child's index; a leaf: its first weight's index */
    unsigned char mode;  /* 0 <=, 1 <, 2 >=, 3 >, 4 ==, 5 !=, 6 leaf */
    unsigned char missing_goes_true;
    unsigned short padding;
} sluice_tree_node;

/* Sums each target's leaf weights over the trees for rows × columns features (row-major
 * doubles), into scores (rows × targets) and reached (whether any tree weighed a target).
 * aggregate: 0 sum (and average), 1 minimum, 2 maximum. wide: double thresholds by node, or
 * NULL when every threshold is the node's float; all_less_or_equal: every branch is <=, which
 * takes a shorter loop; depths: how many branches each tree's deepest leaf lies below its root. The float variant accumulates in float, as onnxruntime does for float
 * thresholds. */
void sluice_forest_scores_f32(const sluice_tree_node *nodes, const double *wide, int all_less_or_equal, const int *roots,
                              const int *depths, long root_count, const int *leaf_targets, const double *leaf_weights, long targets,
                              int aggregate, const double *x, long rows, long columns, float *scores, unsigned char *reached);
void sluice_forest_scores_f64(const sluice_tree_node *nodes, const double *wide, int all_less_or_equal, const int *roots,
                              const int *depths, long root_count, const int *leaf_targets, const double *leaf_weights, long targets,
                              int aggregate, const double *x, long rows, long columns, double *scores, unsigned char *reached);
