/* The packed matrix product and the direct 1-D convolution of CKernels at every instruction level
 * the CPU runs, on the benchmark models' shapes, with OpenBLAS's cblas_sgemm on the same product
 * as the peer. Built and run by tools/bench/kernels.sh; one thread; GFLOP/s is the best of three
 * timed runs of about 0.3 s each. */
#include "sluice_kernels.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *random_floats(long n) {
    float *p = malloc(sizeof(float) * n);
    for (long i = 0; i < n; i++) p[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return p;
}

/* Best GFLOP/s over three runs of `call` repeated for about 0.3 s. */
#define BEST_GFLOPS(flops, call)                                        \
    ({                                                                  \
        double best = 0;                                                \
        for (int run = 0; run < 3; run++) {                             \
            long reps = 0;                                              \
            double start = now(), elapsed;                              \
            do { call; reps++; } while ((elapsed = now() - start) < 0.3); \
            double rate = (flops) * reps / elapsed / 1e9;               \
            if (rate > best) best = rate;                               \
        }                                                               \
        best;                                                           \
    })

static const char *level_names[] = {"baseline", "avx2", "avx512"};

static void product(long m, long k, long n) {
    float *a = random_floats(m * k), *b = random_floats(k * n), *c = malloc(sizeof(float) * m * n);
    float *packed = malloc(sizeof(float) * (n + 15) / 16 * 16 * k);
    sluice_pack_b(k, n, b, n, packed);
    double flops = 2.0 * m * n * k;
    double blas = BEST_GFLOPS(flops, cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n));
    printf("product %4ldx%4ldx%4ld  openblas %6.1f", m, k, n, blas);
    double previous = 0, rate = 0;
    for (int level = 1; level <= sluice_kernels_level(); level++) {
        previous = rate;
        rate = BEST_GFLOPS(flops, sluice_sgemm_packed_at(level, m, n, k, 1, a, k, packed, 0, c, n));
        printf("  %s %6.1f", level_names[level], rate);
    }
    if (previous > 0) printf("  avx512/avx2 %.2f", rate / previous);
    printf("  best/openblas %.2f\n", rate / blas);
    free(a), free(b), free(c), free(packed);
}

static void convolution(long m, long channels, long k, long positions) {
    long row = sluice_conv1d_padded_row(positions, k);
    float *w = random_floats(m * channels * k), *x = random_floats(channels * row), *y = malloc(sizeof(float) * m * positions);
    double flops = 2.0 * m * channels * k * positions;
    printf("conv1d  %3ld->%3ld k%ld x%4ld             ", channels, m, k, positions);
    double previous = 0, rate = 0;
    for (int level = 1; level <= sluice_kernels_level(); level++) {
        previous = rate;
        rate = BEST_GFLOPS(flops, sluice_conv1d_at(level, 1, m, channels, k, positions, w, x, row, channels * row, y, 0, 0, 0, 1));
        printf("  %s %6.1f", level_names[level], rate);
    }
    if (previous > 0) printf("  avx512/avx2 %.2f", rate / previous);
    printf("\n");
    free(w), free(x), free(y);
}

int main(void) {
    openblas_set_num_threads(1);
    printf("instruction level in use: %s; GFLOP/s, one thread\n", level_names[sluice_kernels_level()]);
    /* The MLP's layers (600 -> 1024 -> 1024) at micro-batches of 1, 8 and 32. */
    long rows[] = {1, 8, 32};
    for (int i = 0; i < 3; i++) {
        product(rows[i], 600, 1024);
        product(rows[i], 1024, 1024);
    }
    /* The transformer's dense layers (d 64, feed-forward 128) over 32 windows of 64 steps. */
    product(2048, 64, 64);
    product(2048, 64, 128);
    product(2048, 128, 64);
    /* The 1-D CNN's four convolutions. */
    convolution(64, 6, 5, 128);
    convolution(64, 64, 5, 128);
    convolution(128, 64, 3, 64);
    convolution(128, 128, 3, 64);
    return 0;
}
