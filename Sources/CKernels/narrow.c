#include "sluice_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define NARROW_X86 1
#include <immintrin.h>
#endif

/* IEEE binary32 -> binary16, rounding to nearest even, as F16C's vcvtps2ph does: NaNs stay
 * quiet NaNs with their sign, overflow goes to infinity, tiny values to subnormals or zero. */
static uint16_t half_from_float(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude >= 0x7f800000u) {  /* infinity or NaN */
        return magnitude == 0x7f800000u ? (uint16_t)(sign | 0x7c00u) : (uint16_t)(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
    }
    if (magnitude >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* rounds past 65504 */
    if (magnitude < 0x38800000u) {  /* below the smallest normal half: a subnormal or zero */
        if (magnitude < 0x33000000u) return sign;  /* under half the smallest subnormal */
        uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(magnitude >> 23);  /* 14 + (113 - exponent) */
        uint32_t half = mantissa >> shift;
        uint32_t rest = mantissa & ((1u << shift) - 1u), midpoint = 1u << (shift - 1);
        if (rest > midpoint || (rest == midpoint && (half & 1u))) half += 1;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((magnitude >> 13) - (112u << 10));
    uint32_t rest = magnitude & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half += 1;  /* may carry into the exponent: still right */
    return (uint16_t)(sign | half);
}

static float float_from_half(uint16_t half) {
    uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    uint32_t exponent = (half >> 10) & 0x1fu, mantissa = half & 0x3ffu, bits;
    if (exponent == 0x1fu) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {  /* subnormal: normalize */
        exponent = 113;
        while (!(mantissa & 0x400u)) { mantissa <<= 1; exponent -= 1; }
        bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
    }
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

#ifdef NARROW_X86
static int has_f16c(void) {
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx") ? 1 : 0;
    }
    return known;
}

__attribute__((target("avx,f16c")))
static long to_half_f16c(const float *x, uint16_t *y, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i packed = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(y + i), packed);
    }
    return i;
}

__attribute__((target("avx,f16c")))
static long from_half_f16c(const uint16_t *x, float *y, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    return i;
}
#endif

/* F16C when the CPU has it and the calling thread's level allows vectors (so that tests reach
 * both paths); the portable conversion above for the rest, and for the tail. */
static int use_f16c(void) {
#ifdef NARROW_X86
    return sluice_kernels_level() >= 1 && has_f16c();
#else
    return 0;
#endif
}

void sluice_to_half(const float *x, uint16_t *y, long n) {
    long i = 0;
#ifdef NARROW_X86
    if (use_f16c()) i = to_half_f16c(x, y, n);
#endif
    for (; i < n; i++) y[i] = half_from_float(x[i]);
}

void sluice_from_half(const uint16_t *x, float *y, long n) {
    long i = 0;
#ifdef NARROW_X86
    if (use_f16c()) i = from_half_f16c(x, y, n);
#endif
    for (; i < n; i++) y[i] = float_from_half(x[i]);
}

float sluice_max_abs(const float *x, long n) {
    float largest = 0;
    for (long i = 0; i < n; i++) {
        float magnitude = fabsf(x[i]);
        if (!(magnitude <= largest)) largest = magnitude;  /* NaN sticks */
    }
    return largest;
}

void sluice_to_int8(const float *x, int8_t *y, long n, float inverse_scale) {
    for (long i = 0; i < n; i++) {
        float q = nearbyintf(x[i] * inverse_scale);
        y[i] = (int8_t)(q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q);
    }
}

void sluice_from_int8(const int8_t *x, float *y, long n, float scale) {
    for (long i = 0; i < n; i++) y[i] = (float)x[i] * scale;
}

/* Σ (exact[i] - approximate)² and Σ exact[i]², in double, for each narrowed value widened back:
 * what narrowing cost, measured without a widened copy of the tensor. */
void sluice_half_squared_error(const float *exact, const uint16_t *halves, long n, double *error, double *norm) {
    float widened[256];
    double e = 0, s = 0;
    for (long start = 0; start < n; start += 256) {
        long count = n - start < 256 ? n - start : 256;
        sluice_from_half(halves + start, widened, count);
        for (long i = 0; i < count; i++) {
            double x = exact[start + i], d = x - (double)widened[i];
            e += d * d;
            s += x * x;
        }
    }
    *error += e;
    *norm += s;
}

void sluice_int8_squared_error(const float *exact, const int8_t *q, long n, float scale, double *error, double *norm) {
    double e = 0, s = 0;
    for (long i = 0; i < n; i++) {
        double x = exact[i], d = x - (double)((float)q[i] * scale);
        e += d * d;
        s += x * x;
    }
    *error += e;
    *norm += s;
}
