/* The kernels' bodies, included twice by kernels.c: once with TARGET set to AVX2 + FMA and
 * NAME adding _avx2, once for the baseline. The 8-float vector type lowers to one ymm register
 * with AVX, two xmm registers without. */

typedef float NAME(v8) __attribute__((vector_size(32), aligned(4)));
typedef int NAME(i8) __attribute__((vector_size(32), aligned(4)));

TARGET static inline NAME(v8) NAME(splat)(float x) { return (NAME(v8)){x, x, x, x, x, x, x, x}; }
TARGET static inline NAME(v8) NAME(load)(const float *p) { return *(const NAME(v8) *)p; }
TARGET static inline void NAME(store)(float *p, NAME(v8) v) { *(NAME(v8) *)p = v; }
TARGET static inline NAME(v8) NAME(select)(NAME(i8) mask, NAME(v8) a, NAME(v8) b) {
    NAME(i8) ia, ib;
    __builtin_memcpy(&ia, &a, 32);
    __builtin_memcpy(&ib, &b, 32);
    NAME(i8) r = (ia & mask) | (ib & ~mask);
    NAME(v8) out;
    __builtin_memcpy(&out, &r, 32);
    return out;
}
TARGET static inline NAME(v8) NAME(clamp)(NAME(v8) x, float lo, float hi) {
    NAME(v8) l = NAME(splat)(lo), h = NAME(splat)(hi);
    x = NAME(select)(x < l, l, x);
    return NAME(select)(x > h, h, x);
}

/* exp: Cephes polynomial on [-ln2/2, ln2/2] scaled by 2^n built in the exponent bits. */
TARGET static inline NAME(v8) NAME(vexp)(NAME(v8) x0) {
    NAME(v8) x = NAME(clamp)(x0, -87.3f, 88.7f);
    NAME(v8) magic = NAME(splat)(12582912.0f);
    NAME(v8) t = x * 1.44269504088896341f + magic;
    NAME(v8) n = t - magic;
    NAME(v8) r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    NAME(v8) p = NAME(splat)(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    NAME(i8) bits;
    __builtin_memcpy(&bits, &t, 32);
    bits = (bits - 0x4B400000 + 127) << 23;
    NAME(v8) scale;
    __builtin_memcpy(&scale, &bits, 32);
    NAME(v8) y = p * scale;
    y = NAME(select)(x0 > 88.72283f, NAME(splat)(__builtin_inff()), y);
    return NAME(select)(x0 != x0, x0, y);
}

TARGET static inline NAME(v8) NAME(verf)(NAME(v8) x0) {
    NAME(v8) x = NAME(clamp)(x0, -4.0f, 4.0f);
    NAME(v8) x2 = x * x;
    NAME(v8) p = NAME(splat)(-2.72614225801306e-10f);
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    NAME(v8) q = NAME(splat)(-1.45660718464996e-05f);
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return p / q;
}

TARGET static inline NAME(v8) NAME(vtanh)(NAME(v8) x0) {
    NAME(v8) x = NAME(clamp)(x0, -7.90531110763549805f, 7.90531110763549805f);
    NAME(v8) x2 = x * x;
    NAME(v8) p = NAME(splat)(-2.76076847742355e-16f);
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * x;
    NAME(v8) q = NAME(splat)(1.19825839466702e-06f);
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    NAME(i8) tiny = (x0 < 0.0004f) & (x0 > -0.0004f);
    return NAME(select)(tiny, x0, p / q);
}

TARGET static inline NAME(v8) NAME(vsigmoid)(NAME(v8) x) { return 1.0f / (1.0f + NAME(vexp)(-x)); }
TARGET static inline NAME(v8) NAME(vgelu)(NAME(v8) x) { return x * 0.5f * (1.0f + NAME(verf)(x * 0.70710678118654752f)); }

/* Maps f over n floats, the tail through a zero-padded vector. */
#define NAME_MAP(fn, vfn)                                                        \
    TARGET static void NAME(fn)(const float *x, float *y, long n) {              \
        long i = 0;                                                              \
        for (; i + 8 <= n; i += 8) NAME(store)(y + i, NAME(vfn)(NAME(load)(x + i))); \
        if (i < n) {                                                             \
            float tmp[8] = {0};                                                  \
            for (long k = 0; k < n - i; k++) tmp[k] = x[i + k];                  \
            NAME(v8) r = NAME(vfn)(NAME(load)(tmp));                             \
            NAME(store)(tmp, r);                                                 \
            for (long k = 0; k < n - i; k++) y[i + k] = tmp[k];                  \
        }                                                                        \
    }
NAME_MAP(exp_map, vexp)
NAME_MAP(erf_map, verf)
NAME_MAP(tanh_map, vtanh)
NAME_MAP(sigmoid_map, vsigmoid)
NAME_MAP(gelu_map, vgelu)
#undef NAME_MAP

TARGET static float NAME(exp_shifted_sum)(const float *x, float *y, long n, float shift) {
    NAME(v8) s = NAME(splat)(shift), sum = NAME(splat)(0.0f);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        NAME(v8) e = NAME(vexp)(NAME(load)(x + i) - s);
        NAME(store)(y + i, e);
        sum += e;
    }
    float total = 0;
    for (int k = 0; k < 8; k++) total += sum[k];
    if (i < n) {
        float tmp[8];
        for (int k = 0; k < 8; k++) tmp[k] = i + k < n ? x[i + k] : shift - 100.0f;
        NAME(v8) e = NAME(vexp)(NAME(load)(tmp) - s);
        NAME(store)(tmp, e);
        for (long k = 0; k < n - i; k++) { y[i + k] = tmp[k]; total += tmp[k]; }
    }
    return total;
}

TARGET static float NAME(max)(const float *x, long n) {
    NAME(v8) m = NAME(splat)(-__builtin_inff());
    NAME(i8) nan = {0};
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        NAME(v8) v = NAME(load)(x + i);
        nan |= v != v;
        m = NAME(select)(v > m, v, m);
    }
    float best = -__builtin_inff();
    for (int k = 0; k < 8; k++) { if (nan[k]) return __builtin_nanf(""); if (m[k] > best) best = m[k]; }
    for (; i < n; i++) { if (x[i] != x[i]) return __builtin_nanf(""); if (x[i] > best) best = x[i]; }
    return best;
}

TARGET static void NAME(scale)(float *y, long n, float s) {
    NAME(v8) v = NAME(splat)(s);
    long i = 0;
    for (; i + 8 <= n; i += 8) NAME(store)(y + i, NAME(load)(y + i) * v);
    for (; i < n; i++) y[i] *= s;
}

/* ROWS rows of A times a 16-column block of B. */
#define NAME_TILE(ROWS)                                                                            \
    TARGET static inline void NAME(tile##ROWS)(long k, float alpha, const float *a, long lda,       \
                                               const float *b, long ldb, float beta, float *c, long ldc) { \
        NAME(v8) acc0[ROWS], acc1[ROWS];                                                           \
        for (int r = 0; r < ROWS; r++) { acc0[r] = NAME(splat)(0.0f); acc1[r] = NAME(splat)(0.0f); } \
        for (long p = 0; p < k; p++) {                                                             \
            NAME(v8) b0 = NAME(load)(b + p * ldb), b1 = NAME(load)(b + p * ldb + 8);               \
            for (int r = 0; r < ROWS; r++) {                                                       \
                NAME(v8) av = NAME(splat)(a[r * lda + p]);                                         \
                acc0[r] += av * b0;                                                                \
                acc1[r] += av * b1;                                                                \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < ROWS; r++) {                                                           \
            NAME(v8) y0 = acc0[r] * alpha, y1 = acc1[r] * alpha;                                   \
            if (beta != 0.0f) { y0 += NAME(load)(c + r * ldc); y1 += NAME(load)(c + r * ldc + 8); } \
            NAME(store)(c + r * ldc, y0);                                                          \
            NAME(store)(c + r * ldc + 8, y1);                                                      \
        }                                                                                          \
    }
NAME_TILE(1)
NAME_TILE(2)
NAME_TILE(3)
NAME_TILE(4)
NAME_TILE(5)
NAME_TILE(6)
#undef NAME_TILE

#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 16
#endif

/* ROWS rows of A times one packed 16-column panel of B ([k][16], contiguous); COLS of the 16
 * are stored. One and two rows split k over independent accumulators: a single FMA chain
 * would wait on its own latency. */
#define NAME_PANEL(ROWS)                                                                           \
    TARGET static inline void NAME(panel##ROWS)(long k, float alpha, const float *a, long lda,      \
                                                const float *panel, float beta, float *c, long ldc, long cols) { \
        NAME(v8) acc0[ROWS], acc1[ROWS];                                                           \
        for (int r = 0; r < ROWS; r++) { acc0[r] = NAME(splat)(0.0f); acc1[r] = NAME(splat)(0.0f); } \
        long p = 0;                                                                                \
        if (ROWS <= 2) {                                                                           \
            NAME(v8) e0[ROWS], e1[ROWS];                                                           \
            for (int r = 0; r < ROWS; r++) { e0[r] = NAME(splat)(0.0f); e1[r] = NAME(splat)(0.0f); } \
            for (; p + 2 <= k; p += 2) {                                                           \
                __builtin_prefetch(panel + (p + PREFETCH_AHEAD) * 16);                             \
                __builtin_prefetch(panel + (p + PREFETCH_AHEAD + 1) * 16);                         \
                NAME(v8) b0 = NAME(load)(panel + p * 16), b1 = NAME(load)(panel + p * 16 + 8);     \
                NAME(v8) d0 = NAME(load)(panel + p * 16 + 16), d1 = NAME(load)(panel + p * 16 + 24); \
                for (int r = 0; r < ROWS; r++) {                                                   \
                    NAME(v8) av = NAME(splat)(a[r * lda + p]), aw = NAME(splat)(a[r * lda + p + 1]); \
                    acc0[r] += av * b0; acc1[r] += av * b1;                                        \
                    e0[r] += aw * d0; e1[r] += aw * d1;                                            \
                }                                                                                  \
            }                                                                                      \
            for (int r = 0; r < ROWS; r++) { acc0[r] += e0[r]; acc1[r] += e1[r]; }                 \
        }                                                                                          \
        for (; p < k; p++) {                                                                       \
            /* The panel streams from memory: ask for it well ahead of use. */                    \
            __builtin_prefetch(panel + (p + PREFETCH_AHEAD) * 16);                                 \
            NAME(v8) b0 = NAME(load)(panel + p * 16), b1 = NAME(load)(panel + p * 16 + 8);         \
            for (int r = 0; r < ROWS; r++) {                                                       \
                NAME(v8) av = NAME(splat)(a[r * lda + p]);                                         \
                acc0[r] += av * b0;                                                                \
                acc1[r] += av * b1;                                                                \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < ROWS; r++) {                                                           \
            NAME(v8) y0 = acc0[r] * alpha, y1 = acc1[r] * alpha;                                   \
            float *out = c + r * ldc;                                                              \
            if (cols == 16) {                                                                      \
                if (beta != 0.0f) { y0 += NAME(load)(out); y1 += NAME(load)(out + 8); }            \
                NAME(store)(out, y0);                                                              \
                NAME(store)(out + 8, y1);                                                          \
            } else {                                                                               \
                float tmp[16];                                                                     \
                NAME(store)(tmp, y0);                                                              \
                NAME(store)(tmp + 8, y1);                                                          \
                for (long j = 0; j < cols; j++) out[j] = tmp[j] + (beta != 0.0f ? out[j] : 0.0f);  \
            }                                                                                      \
        }                                                                                          \
    }
NAME_PANEL(1)
NAME_PANEL(2)
NAME_PANEL(3)
NAME_PANEL(4)
NAME_PANEL(5)
NAME_PANEL(6)
#undef NAME_PANEL

/* One row of A against packed B: four panels at a time, so that eight independent FMA chains
 * hide the FMA latency a single panel's chain would wait on. */
TARGET static void NAME(gemv_packed)(long n, long k, float alpha, const float *a, const float *packed, float beta, float *c) {
    long panels = (n + 15) / 16;
    long q = 0;
    for (; q + 4 <= panels; q += 4) {
        const float *p0 = packed + q * k * 16, *p1 = p0 + k * 16, *p2 = p1 + k * 16, *p3 = p2 + k * 16;
        NAME(v8) s[8];
        for (int i = 0; i < 8; i++) s[i] = NAME(splat)(0.0f);
        for (long p = 0; p < k; p++) {
            NAME(v8) av = NAME(splat)(a[p]);
            s[0] += av * NAME(load)(p0 + p * 16); s[1] += av * NAME(load)(p0 + p * 16 + 8);
            s[2] += av * NAME(load)(p1 + p * 16); s[3] += av * NAME(load)(p1 + p * 16 + 8);
            s[4] += av * NAME(load)(p2 + p * 16); s[5] += av * NAME(load)(p2 + p * 16 + 8);
            s[6] += av * NAME(load)(p3 + p * 16); s[7] += av * NAME(load)(p3 + p * 16 + 8);
        }
        for (int i = 0; i < 8; i++) {
            long column = q * 16 + i * 8;
            NAME(v8) y = s[i] * alpha;
            if (column + 8 <= n) {
                if (beta != 0.0f) y += NAME(load)(c + column);
                NAME(store)(c + column, y);
            } else {
                for (long j = 0; column + j < n; j++) c[column + j] = y[j] + (beta != 0.0f ? c[column + j] : 0.0f);
            }
        }
    }
    for (; q < panels; q++) {
        long cols = n - q * 16 < 16 ? n - q * 16 : 16;
        NAME(panel1)(k, alpha, a, k, packed + q * k * 16, beta, c + q * 16, 0, cols);
    }
}

TARGET static void NAME(sgemm_packed)(long m, long n, long k, float alpha, const float *a, long lda, const float *packed,
                                      float beta, float *c, long ldc) {
    if (m == 1) {
        NAME(gemv_packed)(n, k, alpha, a, packed, beta, c);
        return;
    }
    long panels = (n + 15) / 16;
    /* Rows in near-equal chunks of at most 6 (8 rows as 4 + 4, not 6 + 2). */
    long chunks = (m + 5) / 6, chunk = chunks > 0 ? (m + chunks - 1) / chunks : 1;
    for (long q = 0; q < panels; q++) {
        const float *panel = packed + q * k * 16;
        long cols = n - q * 16 < 16 ? n - q * 16 : 16;
        for (long m0 = 0; m0 < m; m0 += chunk) {
            long rows = m - m0 < chunk ? m - m0 : chunk;
            const float *ap = a + m0 * lda;
            float *cp = c + m0 * ldc + q * 16;
            switch (rows) {
            case 6: NAME(panel6)(k, alpha, ap, lda, panel, beta, cp, ldc, cols); break;
            case 5: NAME(panel5)(k, alpha, ap, lda, panel, beta, cp, ldc, cols); break;
            case 4: NAME(panel4)(k, alpha, ap, lda, panel, beta, cp, ldc, cols); break;
            case 3: NAME(panel3)(k, alpha, ap, lda, panel, beta, cp, ldc, cols); break;
            case 2: NAME(panel2)(k, alpha, ap, lda, panel, beta, cp, ldc, cols); break;
            default: NAME(panel1)(k, alpha, ap, lda, panel, beta, cp, ldc, cols); break;
            }
        }
    }
}

TARGET static void NAME(sgemm_small)(long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                                     long ldb, float beta, float *c, long ldc) {
    long n0 = 0;
    for (; n0 + 16 <= n; n0 += 16) {
        for (long m0 = 0; m0 < m; m0 += 6) {
            long rows = m - m0 < 6 ? m - m0 : 6;
            const float *ap = a + m0 * lda;
            float *cp = c + m0 * ldc + n0;
            switch (rows) {
            case 6: NAME(tile6)(k, alpha, ap, lda, b + n0, ldb, beta, cp, ldc); break;
            case 5: NAME(tile5)(k, alpha, ap, lda, b + n0, ldb, beta, cp, ldc); break;
            case 4: NAME(tile4)(k, alpha, ap, lda, b + n0, ldb, beta, cp, ldc); break;
            case 3: NAME(tile3)(k, alpha, ap, lda, b + n0, ldb, beta, cp, ldc); break;
            case 2: NAME(tile2)(k, alpha, ap, lda, b + n0, ldb, beta, cp, ldc); break;
            default: NAME(tile1)(k, alpha, ap, lda, b + n0, ldb, beta, cp, ldc); break;
            }
        }
    }
    /* Remaining columns, one at a time. */
    for (; n0 < n; n0++) {
        for (long r = 0; r < m; r++) {
            float sum = 0;
            for (long p = 0; p < k; p++) sum += a[r * lda + p] * b[p * ldb + n0];
            c[r * ldc + n0] = alpha * sum + (beta != 0.0f ? c[r * ldc + n0] : 0.0f);
        }
    }
}

/* Layer normalization of rows of `cols` floats: x, or x + residual when given; mean and
 * 1/sqrt(var + eps) per row to `mean` and `inv` when given. */
TARGET static void NAME(layernorm)(const float *x, const float *residual, long rows, long cols, const float *scale,
                                   const float *bias, float eps, float *y, float *mean_out, float *inv_out) {
    for (long r = 0; r < rows; r++) {
        const float *src = x + r * cols;
        float *dst = y + r * cols;
        const float *in = src;
        if (residual) {
            const float *res = residual + r * cols;
            long i = 0;
            for (; i + 8 <= cols; i += 8) NAME(store)(dst + i, NAME(load)(src + i) + NAME(load)(res + i));
            for (; i < cols; i++) dst[i] = src[i] + res[i];
            in = dst;
        }
        NAME(v8) s = NAME(splat)(0.0f);
        long i = 0;
        for (; i + 8 <= cols; i += 8) s += NAME(load)(in + i);
        float sum = 0;
        for (int k = 0; k < 8; k++) sum += s[k];
        for (; i < cols; i++) sum += in[i];
        float mean = sum / (float)cols;
        NAME(v8) m = NAME(splat)(mean), v = NAME(splat)(0.0f);
        i = 0;
        for (; i + 8 <= cols; i += 8) { NAME(v8) d = NAME(load)(in + i) - m; v += d * d; }
        float var = 0;
        for (int k = 0; k < 8; k++) var += v[k];
        for (; i < cols; i++) { float d = in[i] - mean; var += d * d; }
        var /= (float)cols;
        float inv = 1.0f / __builtin_sqrtf(var + eps);
        if (mean_out) mean_out[r] = mean;
        if (inv_out) inv_out[r] = inv;
        NAME(v8) iv = NAME(splat)(inv);
        i = 0;
        for (; i + 8 <= cols; i += 8) {
            NAME(v8) t = (NAME(load)(in + i) - m) * iv;
            if (scale) t = t * NAME(load)(scale + i);
            if (bias) t = t + NAME(load)(bias + i);
            NAME(store)(dst + i, t);
        }
        for (; i < cols; i++) {
            float t = (in[i] - mean) * inv;
            if (scale) t *= scale[i];
            if (bias) t += bias[i];
            dst[i] = t;
        }
    }
}

/* The per-channel epilogue of a convolution on one vector: ((v + bias) · scale + shift), each
 * term only when given, then Relu. Each step rounds on its own, as the unfused nodes do, so the
 * fused result is bit for bit the separate kernels' result: no contraction into an FMA here. */
TARGET static inline NAME(v8) NAME(conv_epilogue)(NAME(v8) v, const float *bias, const float *scale, const float *shift,
                                                  long channel, int relu) {
#pragma STDC FP_CONTRACT OFF
    if (bias) v = v + NAME(splat)(bias[channel]);
    if (scale) v = v * NAME(splat)(scale[channel]);
    if (shift) v = v + NAME(splat)(shift[channel]);
    if (relu) {
        /* Swift's max(v, 0), as Activation.relu computes it: −0 becomes +0 and NaN stays NaN. */
        NAME(v8) zero = NAME(splat)(0.0f);
        v = NAME(select)(zero >= v, zero, v);
    }
    return v;
}

/* ROWS output channels × 16 output positions of a stride-1 1-D convolution over a padded input:
 * y[r, t] = Σ_c Σ_j w[r, c, j] · x[c, t + j]. Every input row has 16 + k − 1 readable floats from
 * x, so the last, partial block of positions reads padding instead of branching; `cols` of the 16
 * are stored. Every loop over the rows is unrolled so that the accumulators live in registers;
 * the taps of the common kernel sizes (3 and 5) are unrolled too, since a loop of 3 or 5
 * iterations per channel costs a good part of the time, and the general tap loop is kept rolled
 * because unrolled it would need more than the 16 vector registers and spill. */
#define NAME_CONV_TAP(ROWS, j)                                                                         \
    {                                                                                                  \
        NAME(v8) b0 = NAME(load)(xr + (j)), b1 = NAME(load)(xr + (j) + 8);                             \
        _Pragma("clang loop unroll(full)")                                                             \
        for (int r = 0; r < ROWS; r++) {                                                               \
            NAME(v8) av = NAME(splat)(wr[r * ldw + (j)]);                                              \
            acc0[r] += av * b0;                                                                        \
            acc1[r] += av * b1;                                                                        \
        }                                                                                              \
    }
#define NAME_CONV_TILE(ROWS)                                                                           \
    TARGET static inline void NAME(conv_tile##ROWS)(long channels, long k, const float *w, long ldw,    \
                                                    const float *x, long ldx, float *y, long ldy,       \
                                                    long cols, const float *bias, const float *scale,   \
                                                    const float *shift, long m0, int relu) {            \
        NAME(v8) acc0[ROWS], acc1[ROWS];                                                               \
        _Pragma("clang loop unroll(full)")                                                             \
        for (int r = 0; r < ROWS; r++) { acc0[r] = NAME(splat)(0.0f); acc1[r] = NAME(splat)(0.0f); }   \
        if (k == 3) {                                                                                  \
            for (long c = 0; c < channels; c++) {                                                      \
                const float *xr = x + c * ldx, *wr = w + c * 3;                                        \
                NAME_CONV_TAP(ROWS, 0) NAME_CONV_TAP(ROWS, 1) NAME_CONV_TAP(ROWS, 2)                   \
            }                                                                                          \
        } else if (k == 5) {                                                                           \
            for (long c = 0; c < channels; c++) {                                                      \
                const float *xr = x + c * ldx, *wr = w + c * 5;                                        \
                NAME_CONV_TAP(ROWS, 0) NAME_CONV_TAP(ROWS, 1) NAME_CONV_TAP(ROWS, 2)                   \
                NAME_CONV_TAP(ROWS, 3) NAME_CONV_TAP(ROWS, 4)                                          \
            }                                                                                          \
        } else {                                                                                       \
            for (long c = 0; c < channels; c++) {                                                      \
                const float *xr = x + c * ldx, *wr = w + c * k;                                        \
                _Pragma("clang loop unroll(disable)")                                                  \
                for (long j = 0; j < k; j++) NAME_CONV_TAP(ROWS, j)                                    \
            }                                                                                          \
        }                                                                                              \
        _Pragma("clang loop unroll(full)")                                                             \
        for (int r = 0; r < ROWS; r++) {                                                               \
            NAME(v8) y0 = NAME(conv_epilogue)(acc0[r], bias, scale, shift, m0 + r, relu);              \
            NAME(v8) y1 = NAME(conv_epilogue)(acc1[r], bias, scale, shift, m0 + r, relu);              \
            float *out = y + r * ldy;                                                                  \
            if (cols == 16) {                                                                          \
                NAME(store)(out, y0);                                                                  \
                NAME(store)(out + 8, y1);                                                              \
            } else {                                                                                   \
                float tmp[16];                                                                         \
                NAME(store)(tmp, y0);                                                                  \
                NAME(store)(tmp + 8, y1);                                                              \
                for (long t = 0; t < cols; t++) out[t] = tmp[t];                                       \
            }                                                                                          \
        }                                                                                              \
    }
NAME_CONV_TILE(1)
NAME_CONV_TILE(2)
NAME_CONV_TILE(3)
NAME_CONV_TILE(4)
NAME_CONV_TILE(5)
NAME_CONV_TILE(6)
#undef NAME_CONV_TILE
#undef NAME_CONV_TAP

TARGET static void NAME(conv1d)(long batch, long m, long channels, long k, long positions, const float *w,
                                const float *x, long ldx, long x_sample, float *y, const float *bias,
                                const float *scale, const float *shift, int relu) {
    long ldw = channels * k;
    /* Channels in near-equal chunks of at most 6 (64 as 6 × 10 + 4). Samples outermost, then
     * spans of 256 positions: the span's input (channels × 256 floats and the taps' overlap)
     * stays in L1 or L2 while all the weights pass over it. With the channel chunks outermost
     * instead, a micro-batch of 32 streamed its inputs from L3 once per chunk and ran at two
     * thirds of the speed. */
    long chunks = (m + 5) / 6, chunk = chunks > 0 ? (m + chunks - 1) / chunks : 1;
    for (long s = 0; s < batch; s++) {
        for (long span = 0; span < positions; span += 256) {
            long span_end = positions - span < 256 ? positions : span + 256;
            for (long m0 = 0; m0 < m; m0 += chunk) {
                long rows = m - m0 < chunk ? m - m0 : chunk;
                const float *wp = w + m0 * ldw;
                for (long t0 = span; t0 < span_end; t0 += 16) {
                    long cols = span_end - t0 < 16 ? span_end - t0 : 16;
                    const float *xp = x + s * x_sample + t0;
                    float *yp = y + (s * m + m0) * positions + t0;
                    switch (rows) {
                    case 6: NAME(conv_tile6)(channels, k, wp, ldw, xp, ldx, yp, positions, cols, bias, scale, shift, m0, relu); break;
                    case 5: NAME(conv_tile5)(channels, k, wp, ldw, xp, ldx, yp, positions, cols, bias, scale, shift, m0, relu); break;
                    case 4: NAME(conv_tile4)(channels, k, wp, ldw, xp, ldx, yp, positions, cols, bias, scale, shift, m0, relu); break;
                    case 3: NAME(conv_tile3)(channels, k, wp, ldw, xp, ldx, yp, positions, cols, bias, scale, shift, m0, relu); break;
                    case 2: NAME(conv_tile2)(channels, k, wp, ldw, xp, ldx, yp, positions, cols, bias, scale, shift, m0, relu); break;
                    default: NAME(conv_tile1)(channels, k, wp, ldw, xp, ldx, yp, positions, cols, bias, scale, shift, m0, relu); break;
                    }
                }
            }
        }
    }
}

/* row[i] = the larger of row[i] and tap[i · stride], NaN if either is NaN. */
TARGET static void NAME(max_into)(float *row, const float *tap, long stride, long n) {
    if (stride == 2) {
        /* Max pooling's usual 2 / 2 window: pairs deinterleaved eight at a time. */
        long i = 0;
        for (; i + 8 <= n; i += 8) {
            NAME(v8) lo = NAME(load)(tap + 2 * i), hi = NAME(load)(tap + 2 * i + 8);
            NAME(v8) v = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
            NAME(v8) best = NAME(load)(row + i);
            NAME(store)(row + i, NAME(select)((v > best) | (v != v), v, best));
        }
        for (; i < n; i++) { float v = tap[2 * i]; row[i] = v > row[i] || v != v ? v : row[i]; }
        return;
    }
    for (long i = 0; i < n; i++) { float v = tap[i * stride]; row[i] = v > row[i] || v != v ? v : row[i]; }
}
