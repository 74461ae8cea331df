/* cblas_sgemm throughput on this machine, for the benchmark's GFLOP/s column: the best of
 * several square and MLP-shaped products, one BLAS thread unless OPENBLAS_NUM_THREADS says
 * otherwise. Prints one JSON object. Built and run by tools/bench/runtime.sh. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double gflops(int m, int n, int k, double seconds) {
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
    for (int i = 0; i < m * k; i++) a[i] = (float)(i % 7) * 0.01f;
    for (int i = 0; i < k * n; i++) b[i] = (float)(i % 5) * 0.01f;
    for (int i = 0; i < 3; i++) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
    long runs = 0;
    double start = now(), end;
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
        runs++;
        end = now();
    } while (end - start < seconds);
    free(a); free(b); free(c);
    return 2.0 * m * n * k * runs / (end - start) / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    double square512 = gflops(512, 512, 512, seconds);
    double square1024 = gflops(1024, 1024, 1024, seconds);
    double mlp32 = gflops(32, 1024, 1024, seconds);
    double peak = square512 > square1024 ? square512 : square1024;
    printf("{\"peak_gflops\": %.2f, \"sgemm_512\": %.2f, \"sgemm_1024\": %.2f, \"sgemm_32x1024x1024\": %.2f, \"threads\": %d}\n",
           peak, square512, square1024, mlp32, openblas_get_num_threads());
    return 0;
}
