/* Rotary position embedding, HF LLaMA convention (rotate_half):
 *   inv_freq[i] = theta^(-2i/D), i < D/2;  a = (pos0 + t) * inv_freq[i]
 *   y[i]       = x[i] cos a - x[i+D/2] sin a
 *   y[i+D/2]   = x[i+D/2] cos a + x[i] sin a
 * Backward is the inverse rotation:
 *   dx[i]      =  dy[i] cos a + dy[i+D/2] sin a
 *   dx[i+D/2]  = -dy[i] sin a + dy[i+D/2] cos a
 * x [B,H,T,D] may be a strided view (heads split out of a projection); y is
 * contiguous, so the op also does the transpose copy. */
#include <math.h>
#include <string.h>

#include "nn_impl.h"

/* cos/sin table [T, D/2], computed like HF in float32: inv_freq and the
 * product pos*inv_freq are rounded to float before cos/sin. */
static void rope_table(float *cs, float *sn, int64_t T, int64_t D, int pos0, float theta) {
    int64_t half = D / 2;
    for (int64_t i = 0; i < half; i++) {
        float inv = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)D));
        for (int64_t t = 0; t < T; t++) {
            float a = (float)(pos0 + t) * inv;
            cs[t * half + i] = (float)cos((double)a);
            sn[t * half + i] = (float)sin((double)a);
        }
    }
}

static int rope_backward(mtft_graph *g, mtft_node *n) {
    mtft_tensor *x = n->in[0];
    float *dx = mtft__grad(g, x); /* contiguous, logical order [B,H,T,D] */
    if (!dx) return MTFT_OK;
    const float *dy = n->out->grad;
    const float *cs = n->saved;
    int64_t B = x->ne[0], H = x->ne[1], T = x->ne[2], D = x->ne[3], half = D / 2;
    const float *sn = cs + T * half;
#pragma omp parallel for if (B * H * T * D > 32768)
    for (int64_t bh = 0; bh < B * H; bh++) {
        for (int64_t t = 0; t < T; t++) {
            const float *c = cs + t * half, *s = sn + t * half;
            const float *gy = dy + (bh * T + t) * D;
            float *gx = dx + (bh * T + t) * D;
            for (int64_t i = 0; i < half; i++) {
                float a = gy[i], b = gy[i + half];
                gx[i] += a * c[i] + b * s[i];
                gx[i + half] += b * c[i] - a * s[i];
            }
        }
    }
    return MTFT_OK;
}

static const mtft_op_def rope_op = {"rope", rope_backward};

mtft_tensor *mtft_nn__rope(mtft_graph *g, mtft_tensor *x, int pos0, float theta) {
    if (!mtft__op_begin(g, 1, x)) return NULL;
    char sx[64];
    if (x->ndim != 4 || x->ne[3] % 2 != 0)
        return mtft__op_fail(g, MTFT_ESHAPE, "rope: input %s must be [B,H,T,D] with D even",
                             mtft__shape_str(x, sx, sizeof sx));
    if (!(theta > 0.0f) || pos0 < 0)
        return mtft__op_fail(g, MTFT_EINVAL, "rope: theta %g must be > 0 and pos0 %d >= 0", (double)theta, pos0);
    int64_t B = x->ne[0], H = x->ne[1], T = x->ne[2], D = x->ne[3], half = D / 2;
    float *cs = mtft__scratch(g, (size_t)(2 * T * half) * sizeof(float));
    mtft_tensor *y = mtft__new(g, 4, x->ne);
    if (!cs || !y) return NULL;
    float *sn = cs + T * half;
    rope_table(cs, sn, T, D, pos0, theta);
    const int64_t s0 = x->st[0], s1 = x->st[1], s2 = x->st[2], s3 = x->st[3];
#pragma omp parallel for if (B * H * T * D > 32768)
    for (int64_t bh = 0; bh < B * H; bh++) {
        int64_t b = bh / H, h = bh % H;
        for (int64_t t = 0; t < T; t++) {
            const float *xr = x->data + b * s0 + h * s1 + t * s2;
            const float *c = cs + t * half, *s = sn + t * half;
            float *yr = y->data + (bh * T + t) * D;
            for (int64_t i = 0; i < half; i++) {
                float a = xr[i * s3], bb = xr[(i + half) * s3];
                yr[i] = a * c[i] - bb * s[i];
                yr[i + half] = bb * c[i] + a * s[i];
            }
        }
    }
    mtft_node *n = mtft__record(g, &rope_op, y, 1, x);
    if (n) n->saved = cs;
    return y;
}
