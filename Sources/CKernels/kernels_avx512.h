/* AVX-512 versions of the two kernels that carry most of the FLOPs (the packed matrix product and
 * the direct 1-D convolution), included once by kernels.c on x86-64. A 16-float vector is one
 * zmm register, and there are 32 of them: twice the width and twice the registers of the AVX2
 * build, so a tile keeps 24 accumulators in registers where the AVX2 tile keeps 12. */

#define T512 __attribute__((target("avx512f,avx512vl,avx2,fma")))

typedef float v16 __attribute__((vector_size(64), aligned(4)));

T512 static inline v16 splat16(float x) { return (v16){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
T512 static inline v16 load16(const float *p) { return *(const v16 *)p; }
T512 static inline void store16(float *p, v16 v) { *(v16 *)p = v; }

/* Writes the first `cols` floats of v (all 16 when cols is 16) to out, adding out's own values
 * when accumulating. */
T512 static inline void store16_cols(float *out, v16 v, long cols, int accumulate) {
    if (cols == 16) {
        if (accumulate) v += load16(out);
        store16(out, v);
        return;
    }
    float tmp[16];
    store16(tmp, v);
    for (long j = 0; j < cols; j++) out[j] = tmp[j] + (accumulate ? out[j] : 0.0f);
}

/* ROWS rows of A times PANELS consecutive packed panels of B (each [k][16], `panel_stride` floats
 * apart); the last panel stores `cols` of its 16 columns. Tiles with fewer than eight
 * accumulators split k over two sets, so that enough independent FMA chains are in flight to
 * hide the FMA latency. */
#define GEMM512_TILE(ROWS, PANELS)                                                                         \
    T512 static inline void gemm512_tile_##ROWS##x##PANELS(long k, float alpha, const float *a, long lda,  \
                                                          const float *panel, long panel_stride, float beta, \
                                                          float *c, long ldc, long cols) {                 \
        v16 acc[ROWS][PANELS], alt[ROWS][PANELS];                                                          \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < ROWS; r++)                                  \
            _Pragma("clang loop unroll(full)") for (int q = 0; q < PANELS; q++) {                          \
                acc[r][q] = splat16(0.0f);                                                                 \
                alt[r][q] = splat16(0.0f);                                                                 \
            }                                                                                              \
        long p = 0;                                                                                        \
        if (ROWS * PANELS < 8) {                                                                           \
            for (; p + 2 <= k; p += 2) {                                                                   \
                _Pragma("clang loop unroll(full)") for (int q = 0; q < PANELS; q++) {                      \
                    __builtin_prefetch(panel + q * panel_stride + (p + PREFETCH_AHEAD) * 16);              \
                    __builtin_prefetch(panel + q * panel_stride + (p + PREFETCH_AHEAD + 1) * 16);          \
                }                                                                                          \
                _Pragma("clang loop unroll(full)") for (int q = 0; q < PANELS; q++) {                      \
                    v16 b0 = load16(panel + q * panel_stride + p * 16);                                    \
                    v16 b1 = load16(panel + q * panel_stride + p * 16 + 16);                               \
                    _Pragma("clang loop unroll(full)") for (int r = 0; r < ROWS; r++) {                    \
                        acc[r][q] += splat16(a[r * lda + p]) * b0;                                         \
                        alt[r][q] += splat16(a[r * lda + p + 1]) * b1;                                     \
                    }                                                                                      \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
        for (; p < k; p++) {                                                                               \
            _Pragma("clang loop unroll(full)") for (int q = 0; q < PANELS; q++)                            \
                __builtin_prefetch(panel + q * panel_stride + (p + PREFETCH_AHEAD) * 16);                  \
            v16 b[PANELS];                                                                                 \
            _Pragma("clang loop unroll(full)") for (int q = 0; q < PANELS; q++)                            \
                b[q] = load16(panel + q * panel_stride + p * 16);                                          \
            _Pragma("clang loop unroll(full)") for (int r = 0; r < ROWS; r++) {                            \
                v16 av = splat16(a[r * lda + p]);                                                          \
                _Pragma("clang loop unroll(full)") for (int q = 0; q < PANELS; q++) acc[r][q] += av * b[q]; \
            }                                                                                              \
        }                                                                                                  \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < ROWS; r++)                                  \
            _Pragma("clang loop unroll(full)") for (int q = 0; q < PANELS; q++) {                          \
                v16 y = (ROWS * PANELS < 8 ? acc[r][q] + alt[r][q] : acc[r][q]) * alpha;                   \
                store16_cols(c + r * ldc + q * 16, y, q == PANELS - 1 ? cols : 16, beta != 0.0f);          \
            }                                                                                              \
    }
GEMM512_TILE(1, 2)
GEMM512_TILE(2, 2)
GEMM512_TILE(3, 2)
GEMM512_TILE(4, 2)
GEMM512_TILE(5, 2)
GEMM512_TILE(6, 2)
GEMM512_TILE(7, 2)
GEMM512_TILE(8, 2)
GEMM512_TILE(9, 2)
GEMM512_TILE(10, 2)
GEMM512_TILE(11, 2)
GEMM512_TILE(12, 2)
GEMM512_TILE(1, 1)
GEMM512_TILE(2, 1)
GEMM512_TILE(3, 1)
GEMM512_TILE(4, 1)
GEMM512_TILE(5, 1)
GEMM512_TILE(6, 1)
GEMM512_TILE(7, 1)
GEMM512_TILE(8, 1)
GEMM512_TILE(9, 1)
GEMM512_TILE(10, 1)
GEMM512_TILE(11, 1)
GEMM512_TILE(12, 1)
#undef GEMM512_TILE

/* Two panels (32 columns) at a time, rows in near-equal chunks of at most 12 (24 accumulators);
 * a last odd panel alone. On a 16-core Xeon (one core; K = N = 1024) this ran at 90 and 136–148
 * GFLOP/s for 8 and 32 rows, where 6 rows × 4 panels ran at 71–73 and 123 and the AVX2 kernel
 * at 50–60 and 66–80: each panel pair is read from L2 once per 12 rows, not once per 6. */
T512 static void sgemm_packed_avx512(long m, long n, long k, float alpha, const float *a, long lda, const float *packed,
                                     float beta, float *c, long ldc) {
    long panels = (n + 15) / 16, stride = k * 16;
    long chunks = (m + 11) / 12, chunk = chunks > 0 ? (m + chunks - 1) / chunks : 1;
    for (long q = 0; q < panels;) {
        int group = panels - q >= 2 ? 2 : 1;
        long last = q + group - 1;
        long cols = n - last * 16 < 16 ? n - last * 16 : 16;
        const float *panel = packed + q * stride;
        for (long m0 = 0; m0 < m; m0 += chunk) {
            long rows = m - m0 < chunk ? m - m0 : chunk;
            const float *ap = a + m0 * lda;
            float *cp = c + m0 * ldc + q * 16;
#define GEMM512_CASE(ROWS)                                                                              \
    case ROWS:                                                                                          \
        if (group == 2) gemm512_tile_##ROWS##x2(k, alpha, ap, lda, panel, stride, beta, cp, ldc, cols); \
        else gemm512_tile_##ROWS##x1(k, alpha, ap, lda, panel, stride, beta, cp, ldc, cols);           \
        break;
            switch (rows) {
                GEMM512_CASE(12)
                GEMM512_CASE(11)
                GEMM512_CASE(10)
                GEMM512_CASE(9)
                GEMM512_CASE(8)
                GEMM512_CASE(7)
                GEMM512_CASE(6)
                GEMM512_CASE(5)
                GEMM512_CASE(4)
                GEMM512_CASE(3)
                GEMM512_CASE(2)
            default:
                GEMM512_CASE(1)
            }
#undef GEMM512_CASE
        }
        q += group;
    }
}

/* The convolution epilogue of kernels_impl.h on 16 floats: each step rounds on its own. */
T512 static inline v16 conv512_epilogue(v16 v, const float *bias, const float *scale, const float *shift, long channel,
                                        int relu) {
#pragma STDC FP_CONTRACT OFF
    if (bias) v = v + splat16(bias[channel]);
    if (scale) v = v * splat16(scale[channel]);
    if (shift) v = v + splat16(shift[channel]);
    if (relu) {
        v16 zero = splat16(0.0f);
        typedef int i16v __attribute__((vector_size(64), aligned(4)));
        /* Swift's max(v, 0), as Activation.relu computes it: −0 becomes +0 and NaN stays NaN. */
        i16v zeroed = zero >= v, iv, out;
        __builtin_memcpy(&iv, &v, 64);
        out = iv & ~zeroed;
        __builtin_memcpy(&v, &out, 64);
    }
    return v;
}

/* ROWS output channels × 32 output positions (two vectors), as conv_tile in kernels_impl.h. */
#define CONV512_TAP(ROWS, j)                                                  \
    {                                                                         \
        v16 b0 = load16(xr + (j)), b1 = load16(xr + (j) + 16);                \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < ROWS; r++) {   \
            v16 av = splat16(wr[r * ldw + (j)]);                              \
            acc0[r] += av * b0;                                               \
            acc1[r] += av * b1;                                               \
        }                                                                     \
    }
#define CONV512_TILE(ROWS)                                                                                   \
    T512 static inline void conv512_tile##ROWS(long channels, long k, const float *w, long ldw, const float *x, \
                                               long ldx, float *y, long ldy, long cols, const float *bias,     \
                                               const float *scale, const float *shift, long m0, int relu) {    \
        v16 acc0[ROWS], acc1[ROWS];                                                                          \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < ROWS; r++) {                                  \
            acc0[r] = splat16(0.0f);                                                                         \
            acc1[r] = splat16(0.0f);                                                                         \
        }                                                                                                    \
        if (k == 3) {                                                                                        \
            for (long c = 0; c < channels; c++) {                                                            \
                const float *xr = x + c * ldx, *wr = w + c * 3;                                              \
                CONV512_TAP(ROWS, 0) CONV512_TAP(ROWS, 1) CONV512_TAP(ROWS, 2)                               \
            }                                                                                                \
        } else if (k == 5) {                                                                                 \
            for (long c = 0; c < channels; c++) {                                                            \
                const float *xr = x + c * ldx, *wr = w + c * 5;                                              \
                CONV512_TAP(ROWS, 0) CONV512_TAP(ROWS, 1) CONV512_TAP(ROWS, 2)                               \
                CONV512_TAP(ROWS, 3) CONV512_TAP(ROWS, 4)                                                    \
            }                                                                                                \
        } else {                                                                                             \
            for (long c = 0; c < channels; c++) {                                                            \
                const float *xr = x + c * ldx, *wr = w + c * k;                                              \
                _Pragma("clang loop unroll(disable)") for (long j = 0; j < k; j++) CONV512_TAP(ROWS, j)      \
            }                                                                                                \
        }                                                                                                    \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < ROWS; r++) {                                  \
            v16 y0 = conv512_epilogue(acc0[r], bias, scale, shift, m0 + r, relu);                            \
            v16 y1 = conv512_epilogue(acc1[r], bias, scale, shift, m0 + r, relu);                            \
            float *out = y + r * ldy;                                                                        \
            store16_cols(out, y0, cols < 16 ? cols : 16, 0);                                                 \
            if (cols > 16) store16_cols(out + 16, y1, cols - 16, 0);                                         \
        }                                                                                                    \
    }
CONV512_TILE(1)
CONV512_TILE(2)
CONV512_TILE(3)
CONV512_TILE(4)
CONV512_TILE(5)
CONV512_TILE(6)
CONV512_TILE(7)
CONV512_TILE(8)
CONV512_TILE(9)
CONV512_TILE(10)
CONV512_TILE(11)
CONV512_TILE(12)
#undef CONV512_TILE
#undef CONV512_TAP

/* As conv1d in kernels_impl.h, with channel chunks of at most 12 and 32-position blocks. */
T512 static void conv1d_avx512(long batch, long m, long channels, long k, long positions, const float *w, const float *x,
                               long ldx, long x_sample, float *y, const float *bias, const float *scale,
                               const float *shift, int relu) {
    long ldw = channels * k;
    long chunks = (m + 11) / 12, chunk = chunks > 0 ? (m + chunks - 1) / chunks : 1;
    for (long s = 0; s < batch; s++) {
        for (long span = 0; span < positions; span += 256) {
            long span_end = positions - span < 256 ? positions : span + 256;
            for (long m0 = 0; m0 < m; m0 += chunk) {
                long rows = m - m0 < chunk ? m - m0 : chunk;
                const float *wp = w + m0 * ldw;
                for (long t0 = span; t0 < span_end; t0 += 32) {
                    long cols = span_end - t0 < 32 ? span_end - t0 : 32;
                    const float *xp = x + s * x_sample + t0;
                    float *yp = y + (s * m + m0) * positions + t0;
#define CONV512_CASE(ROWS)                                                                                          \
    case ROWS:                                                                                                      \
        conv512_tile##ROWS(channels, k, wp, ldw, xp, ldx, yp, positions, cols, bias, scale, shift, m0, relu); \
        break;
                    switch (rows) {
                        CONV512_CASE(12)
                        CONV512_CASE(11)
                        CONV512_CASE(10)
                        CONV512_CASE(9)
                        CONV512_CASE(8)
                        CONV512_CASE(7)
                        CONV512_CASE(6)
                        CONV512_CASE(5)
                        CONV512_CASE(4)
                        CONV512_CASE(3)
                        CONV512_CASE(2)
                    default:
                        CONV512_CASE(1)
                    }
#undef CONV512_CASE
                }
            }
        }
    }
}

#undef T512
