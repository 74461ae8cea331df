#include "sluice_kernels.h"

#include <stdlib.h>
#include <string.h>

/* The 8-float vectors only travel between static inline functions, never across an ABI. */
#pragma clang diagnostic ignored "-Wpsabi"

#if defined(__x86_64__) || defined(__i386__)
#define SLUICE_X86 1
#include <cpuid.h>
#endif

#ifdef SLUICE_X86
#define TARGET __attribute__((target("avx2,fma")))
#define NAME(x) x##_avx2
#include "kernels_impl.h"
#undef TARGET
#undef NAME
#endif

#define TARGET
#define NAME(x) x##_base
#include "kernels_impl.h"
#undef TARGET
#undef NAME

#ifdef SLUICE_X86
#include "kernels_avx512.h"
#endif

/* What the CPU runs: 2 with AVX-512 (F and VL), 1 with AVX2 and FMA, else 0. */
static int cpu_level(void) {
#ifdef SLUICE_X86
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") ? 2 : 1;
#else
    return 0;
#endif
}

static int level = -1;
/* A lower level for the calling thread only (-1: none), so that a test can run the same model at
 * every level in one process while other tests run on other threads at the process's level. */
static _Thread_local int thread_cap = -1;

int sluice_kernels_level(void) {
    if (level < 0) {
        int supported = cpu_level(), cap = supported;
        const char *requested = getenv("SLUICE_KERNELS");
        if (requested && strcmp(requested, "baseline") == 0) cap = 0;
        else if (requested && strcmp(requested, "avx2") == 0) cap = 1;
        level = cap < supported ? cap : supported;
    }
    return thread_cap >= 0 && thread_cap < level ? thread_cap : level;
}

void sluice_kernels_cap_thread(int cap) { thread_cap = cap; }

int sluice_kernels_vectorized(void) { return sluice_kernels_level() >= 1; }

/* AMD's Zen 4 (family 19h, the only one of that family with AVX-512) runs each 512-bit operation
 * as two 256-bit halves. There the AVX-512 convolution measured 0.80–1.04 of the AVX2 one (its
 * unaligned 64-byte input loads nearly all cross a cache line), where on an Intel Xeon it measured
 * 1.35–1.7 times as fast; the packed product gained on both. */
static int splits_512_bit_operations(void) {
#ifdef SLUICE_X86
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx) || ebx != 0x68747541 /* "Auth"enticAMD */) return 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    unsigned family = (eax >> 8) & 0xf;
    if (family == 0xf) family += (eax >> 20) & 0xff;
    return family == 0x19;
#else
    return 0;
#endif
}

static int splits_512 = -1;

int sluice_conv1d_level(void) {
    if (splits_512 < 0) splits_512 = splits_512_bit_operations();
    int chosen = sluice_kernels_level();
    return chosen == 2 && splits_512 ? 1 : chosen;
}

int sluice_cpu_has_avx512(void) { return cpu_level() == 2; }

#ifdef SLUICE_X86
#define DISPATCH(call_avx2, call_base) (sluice_kernels_vectorized() ? call_avx2 : call_base)
#else
#define DISPATCH(call_avx2, call_base) (call_base)
#endif

float sluice_exp_shifted_sum(const float *x, float *y, long n, float shift) {
    return DISPATCH(exp_shifted_sum_avx2(x, y, n, shift), exp_shifted_sum_base(x, y, n, shift));
}
void sluice_exp(const float *x, float *y, long n) { DISPATCH(exp_map_avx2(x, y, n), exp_map_base(x, y, n)); }
void sluice_erf(const float *x, float *y, long n) { DISPATCH(erf_map_avx2(x, y, n), erf_map_base(x, y, n)); }
void sluice_tanh(const float *x, float *y, long n) { DISPATCH(tanh_map_avx2(x, y, n), tanh_map_base(x, y, n)); }
void sluice_sigmoid(const float *x, float *y, long n) { DISPATCH(sigmoid_map_avx2(x, y, n), sigmoid_map_base(x, y, n)); }
void sluice_gelu(const float *x, float *y, long n) { DISPATCH(gelu_map_avx2(x, y, n), gelu_map_base(x, y, n)); }
float sluice_max(const float *x, long n) { return DISPATCH(max_avx2(x, n), max_base(x, n)); }
void sluice_scale(float *y, long n, float s) { DISPATCH(scale_avx2(y, n, s), scale_base(y, n, s)); }
void sluice_sgemm_small(long m, long n, long k, float alpha, const float *a, long lda, const float *b, long ldb,
                        float beta, float *c, long ldc) {
    DISPATCH(sgemm_small_avx2(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),
             sgemm_small_base(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc));
}

void sluice_pack_b(long k, long n, const float *b, long ldb, float *packed) {
    long panels = (n + 15) / 16;
    for (long q = 0; q < panels; q++) {
        for (long p = 0; p < k; p++) {
            float *dst = packed + (q * k + p) * 16;
            for (long j = 0; j < 16; j++) {
                long column = q * 16 + j;
                dst[j] = column < n ? b[p * ldb + column] : 0.0f;
            }
        }
    }
}

void sluice_sgemm_packed_at(int at_level, long m, long n, long k, float alpha, const float *a, long lda,
                            const float *packed, float beta, float *c, long ldc) {
#ifdef SLUICE_X86
    /* One row is bound by memory bandwidth, not by the vector width: the AVX2 kernel's eight FMA
     * chains over four panels kept up with it, the AVX-512 tiles measured up to 10% slower. */
    if (at_level >= 2 && m > 1) { sgemm_packed_avx512(m, n, k, alpha, a, lda, packed, beta, c, ldc); return; }
    if (at_level >= 1) { sgemm_packed_avx2(m, n, k, alpha, a, lda, packed, beta, c, ldc); return; }
#endif
    sgemm_packed_base(m, n, k, alpha, a, lda, packed, beta, c, ldc);
}

void sluice_sgemm_packed(long m, long n, long k, float alpha, const float *a, long lda, const float *packed, float beta,
                         float *c, long ldc) {
    sluice_sgemm_packed_at(sluice_kernels_level(), m, n, k, alpha, a, lda, packed, beta, c, ldc);
}

void sluice_layernorm(const float *x, const float *residual, long rows, long cols, const float *scale, const float *bias,
                      float eps, float *y, float *mean, float *inv) {
    DISPATCH(layernorm_avx2(x, residual, rows, cols, scale, bias, eps, y, mean, inv),
             layernorm_base(x, residual, rows, cols, scale, bias, eps, y, mean, inv));
}

long sluice_conv1d_padded_row(long positions, long k) { return (positions + 31) / 32 * 32 + k - 1; }

void sluice_conv1d_at(int at_level, long batch, long m, long channels, long k, long positions, const float *w,
                      const float *x, long ldx, long x_sample, float *y, const float *bias, const float *scale,
                      const float *shift, int relu) {
#ifdef SLUICE_X86
    if (at_level >= 2) {
        conv1d_avx512(batch, m, channels, k, positions, w, x, ldx, x_sample, y, bias, scale, shift, relu);
        return;
    }
    if (at_level == 1) {
        conv1d_avx2(batch, m, channels, k, positions, w, x, ldx, x_sample, y, bias, scale, shift, relu);
        return;
    }
#endif
    conv1d_base(batch, m, channels, k, positions, w, x, ldx, x_sample, y, bias, scale, shift, relu);
}

void sluice_max_into(float *row, const float *tap, long stride, long n) {
    DISPATCH(max_into_avx2(row, tap, stride, n), max_into_base(row, tap, stride, n));
}
