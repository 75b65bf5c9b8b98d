/* CPU kernels of the torch trainer (convert/_cpu/kernels.py loads them): training-mode BatchNorm with an optional
 * ReLU after it, fused, for float32 channels-last tensors; and MXNet's SGD update in one pass (at the end).
 *
 * A channels-last (N, C, H, W) tensor is a (rows = N*H*W, C) row-major array. Forward: per-channel mean and
 * biased variance (double sums), then y = max-with-0((x - mean) * (invstd * gamma) + beta) in one pass. Backward:
 * one pass for the two per-channel sums of g = dy masked by the ReLU (the mask recomputed from x with the same
 * float operations as the forward, so it is the forward's mask exactly), one pass for dx. torch's eager ops take
 * batch_norm + relu_ + threshold_backward + batch_norm_backward: two more passes over memory and two more
 * fresh tensors per layer.
 *
 * Threads: OpenMP, the runtime torch's CPU ops use (libgomp.so.1), so these parallel regions run on the same
 * worker threads (a Python thread pool was slower: torch's OpenMP workers spin for a while after each of its
 * ops and hold the cores). Built with -ffp-contract=off: every product and sum below rounds as written.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The ReLU as torch's relu / threshold_backward: zero where v <= 0, NaN passes through. */
static inline float relu_value(float v) { return v <= 0.0f ? 0.0f : v; }

/* d where the ReLU passed its input v, else +0: a bit mask, so that the loop stays branch-free and vectorizes. */
static inline float relu_grad(float v, float d) {
    uint32_t bits;
    memcpy(&bits, &d, sizeof bits);
    bits &= -(uint32_t)!(v <= 0.0f);
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* One row element's two terms: mode 0 x and x^2 (statistics); 1 g and g * (x - mean) with g the ReLU-masked
 * dy; 2 the same unmasked. */
static inline void terms(const float *xr, const float *dr, long c, const float *mean, const float *scale,
                         const float *beta, int mode, double *a, double *b) {
    if (mode == 0) {
        double v = xr[c];
        *a = v;
        *b = v * v;
        return;
    }
    float xc = xr[c] - mean[c];
    float g = mode == 1 ? relu_grad(xc * scale[c] + beta[c], dr[c]) : dr[c];
    *a = g;
    *b = (double)g * xc;
}

/* Rows lo..hi added into s0/s1, four rows per sweep over the channels (the accumulators are loaded and stored
 * once per four rows: with few channels that, not memory, bounds the loop). */
static inline void sweep(const float *x, const float *dy, long lo, long hi, long C, const float *mean,
                         const float *scale, const float *beta, int mode, double *s0, double *s1) {
    long m = lo;
    for (; m + 4 <= hi; m += 4) {
        const float *x0 = x + m * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
        const float *d0 = dy + m * C, *d1 = d0 + C, *d2 = d1 + C, *d3 = d2 + C;
        for (long c = 0; c < C; ++c) {
            double a0, a1, a2, a3, b0, b1, b2, b3;
            terms(x0, d0, c, mean, scale, beta, mode, &a0, &b0);
            terms(x1, d1, c, mean, scale, beta, mode, &a1, &b1);
            terms(x2, d2, c, mean, scale, beta, mode, &a2, &b2);
            terms(x3, d3, c, mean, scale, beta, mode, &a3, &b3);
            s0[c] += (a0 + a1) + (a2 + a3);
            s1[c] += (b0 + b1) + (b2 + b3);
        }
    }
    for (; m < hi; ++m) {
        const float *xr = x + m * C, *dr = dy + m * C;
        for (long c = 0; c < C; ++c) {
            double a, b;
            terms(xr, dr, c, mean, scale, beta, mode, &a, &b);
            s0[c] += a;
            s1[c] += b;
        }
    }
}

/* Per-thread double partial sums of the two terms over all rows, added up into out0/out1 (length C). */
static int reduce_rows(const float *x, const float *dy, long rows, long C, const float *mean, const float *scale,
                       const float *beta, int mode, double *out0, double *out1) {
    int threads = omp_get_max_threads();
    double *part = calloc((size_t)threads * 2 * (size_t)C, sizeof(double));
    if (!part) return 1;
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        long lo = rows * t / n, hi = rows * (t + 1) / n;
        double *s0 = part + (size_t)t * 2 * C, *s1 = s0 + C;
        /* mode as a constant in each call, so that each loop is compiled for one mode */
        if (mode == 0)
            sweep(x, x, lo, hi, C, NULL, NULL, NULL, 0, s0, s1); /* mode 0 reads no dy: x stands in */
        else if (mode == 1)
            sweep(x, dy, lo, hi, C, mean, scale, beta, 1, s0, s1);
        else
            sweep(x, dy, lo, hi, C, mean, scale, beta, 2, s0, s1);
    }
    for (long c = 0; c < C; ++c) {
        double a = 0.0, b = 0.0;
        for (int t = 0; t < threads; ++t) {
            a += part[(size_t)t * 2 * C + c];
            b += part[(size_t)t * 2 * C + C + c];
        }
        out0[c] = a;
        out1[c] = b;
    }
    free(part);
    return 0;
}

/* Scale of the normalized input: invstd * gamma (gamma NULL: 1), in float32, the same in forward and backward. */
static float *channel_scale(const float *invstd, const float *gamma, long C) {
    float *scale = malloc((size_t)C * sizeof(float));
    if (!scale) return NULL;
    for (long c = 0; c < C; ++c) scale[c] = gamma ? invstd[c] * gamma[c] : invstd[c];
    return scale;
}

/* y = BN(x) (ReLU'd if relu); writes the batch mean, invstd = 1/sqrt(var + eps) and the biased variance.
 * Returns 0, or 1 when out of memory (nothing is written then but y may be partly). */
int gs_batch_norm_forward(const float *x, float *y, long rows, long C, const float *gamma, const float *beta,
                          double eps, int relu, float *mean_out, float *invstd_out, double *var_out) {
    double *sums = malloc((size_t)C * 2 * sizeof(double));
    if (!sums) return 1;
    if (reduce_rows(x, NULL, rows, C, NULL, NULL, NULL, 0, sums, sums + C)) {
        free(sums);
        return 1;
    }
    for (long c = 0; c < C; ++c) {
        double mean = sums[c] / (double)rows;
        double var = sums[C + c] / (double)rows - mean * mean;
        if (var < 0.0) var = 0.0;
        mean_out[c] = (float)mean;
        invstd_out[c] = (float)(1.0 / sqrt(var + eps));
        var_out[c] = var;
    }
    free(sums);
    float *scale = channel_scale(invstd_out, gamma, C);
    if (!scale) return 1;
#pragma omp parallel for schedule(static)
    for (long m = 0; m < rows; ++m) {
        const float *xr = x + m * C;
        float *yr = y + m * C;
        if (relu) {
            for (long c = 0; c < C; ++c) yr[c] = relu_value((xr[c] - mean_out[c]) * scale[c] + beta[c]);
        } else {
            for (long c = 0; c < C; ++c) yr[c] = (xr[c] - mean_out[c]) * scale[c] + beta[c];
        }
    }
    free(scale);
    return 0;
}

/* dx (and dgamma unless gamma is NULL, dbeta) of gs_batch_norm_forward's output, for the incoming gradient dy. */
int gs_batch_norm_backward(const float *x, const float *dy, float *dx, long rows, long C, const float *gamma,
                           const float *beta, const float *mean, const float *invstd, int relu, float *dgamma,
                           float *dbeta) {
    float *scale = channel_scale(invstd, gamma, C);
    double *sums = malloc((size_t)C * 2 * sizeof(double));
    float *k = malloc((size_t)C * 3 * sizeof(float));
    if (!scale || !sums || !k || reduce_rows(x, dy, rows, C, mean, scale, beta, relu ? 1 : 2, sums, sums + C)) {
        free(scale);
        free(sums);
        free(k);
        return 1;
    }
    /* dx = gamma * invstd * (g - mean(g) - (x - mean) * invstd^2 * mean(g * (x - mean))) */
    for (long c = 0; c < C; ++c) {
        double sg = sums[c], sgx = sums[C + c], is = invstd[c];
        double k1 = (gamma ? (double)gamma[c] : 1.0) * is;
        k[c] = (float)k1;
        k[C + c] = (float)(-k1 * is * is * sgx / (double)rows);
        k[2 * C + c] = (float)(-k1 * sg / (double)rows);
        if (gamma) dgamma[c] = (float)(is * sgx);
        dbeta[c] = (float)sg;
    }
    free(sums);
    const float *k1 = k, *k2 = k + C, *k3 = k + 2 * C;
#pragma omp parallel for schedule(static)
    for (long m = 0; m < rows; ++m) {
        const float *xr = x + m * C, *dr = dy + m * C;
        float *o = dx + m * C;
        if (relu) {
            for (long c = 0; c < C; ++c) {
                float xc = xr[c] - mean[c];
                float g = relu_grad(xc * scale[c] + beta[c], dr[c]);
                o[c] = g * k1[c] + xc * k2[c] + k3[c];
            }
        } else {
            for (long c = 0; c < C; ++c) {
                float xc = xr[c] - mean[c];
                o[c] = dr[c] * k1[c] + xc * k2[c] + k3[c];
            }
        }
    }
    free(scale);
    free(k);
    return 0;
}

/* MXNet 1.9's SGD update (sgd_mom_update / sgd_update) of n float32 tensors in one call, in the kernel's order
 * of float32 operations (each rounded, no FMA): with mom, mom = momentum * mom - lr_wd * w - lr_rescale * g and
 * w = w + mom; without (mom NULL), w = w - (lr_wd * w + lr_rescale * g). convert.train_ops.MXNetSGD. */
void gs_sgd_update(long n, float *const *w, const float *const *g, float *const *mom, const long *sizes,
                   float momentum, float lr_wd, float lr_rescale) {
#pragma omp parallel
    for (long t = 0; t < n; ++t) {
        float *wt = w[t];
        const float *gt = g[t];
        long size = sizes[t];
        if (mom) {
            float *mt = mom[t];
#pragma omp for schedule(static) nowait
            for (long i = 0; i < size; ++i) {
                float v = momentum * mt[i];
                v = v - lr_wd * wt[i];
                v = v - lr_rescale * gt[i];
                mt[i] = v;
                wt[i] = wt[i] + v;
            }
        } else {
#pragma omp for schedule(static) nowait
            for (long i = 0; i < size; ++i) wt[i] = wt[i] - (lr_wd * wt[i] + lr_rescale * gt[i]);
        }
    }
}

/* y = logf(x) elementwise with the C library's logf: the function MXNet's CPU log operator calls for float32, so
 * that the training targets' box size codes (convert/train/target.py) are MXNet's to the bit. A plain loop: without
 * -ffast-math the compiler keeps the library call (no vector variant with other rounding). */
void gs_logf(const float *x, float *y, long n) {
    for (long i = 0; i < n; ++i) y[i] = logf(x[i]);
}
