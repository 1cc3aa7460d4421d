/* Inference-only selective scan for the CPU, float32, compiled on first use (native_scan.py).
 *
 * For every (batch, channel) sequence, with the state h of d_state values in registers:
 *     h_t = exp(max(delta_t * A, -80)) * h_{t-1} + delta_t * u_t * B_t,   y_t = <C_t, h_t>.
 * u, delta, y: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, L, d_state), so that
 * one step reads d_state contiguous values. No per-step state is stored. Sequences are split
 * between `threads` POSIX threads. With D (d_inner) and z (batch, d_inner, L) given, each
 * sequence ends with Mamba's output gate, y_t <- (y_t + D u_t) * SiLU(z_t), while it is in cache.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define MAX_THREADS 256
#define LANES 16   /* d_state is padded to a multiple of this by the caller */
#define MAX_STATE 64

/* Vectors of one machine register (GCC/Clang vector extensions): 16 floats with AVX-512,
 * 8 otherwise (AVX2, or two SSE registers). Wider vectors than the target's registers are
 * split by the compiler through the stack: 16-float vectors on AVX2 made the scan 2x slower. */
#if defined(__AVX512F__)
#define VEC 16
#else
#define VEC 8
#endif
#define MAX_CHUNKS (MAX_STATE / VEC)
typedef float vfloat __attribute__((vector_size(4 * VEC)));
typedef int32_t vint __attribute__((vector_size(4 * VEC)));

/* exp(x) for x >= -80 (smaller x are raised to -80, where exp is 0 to float32 precision):
 * x = n ln2 + r with |r| <= ln2/2, e^r by its Taylor series to r^7 (relative error below
 * 1e-7), 2^n built in the exponent bits. */
static inline vfloat exp_vec(vfloat x) {
    const vint low = x < -80.0f;
    x = (vfloat)(((vint)x & ~low) | ((vint)((vfloat){} - 80.0f) & low));
    const vfloat shifter = (vfloat){} + 12582912.0f; /* 1.5 * 2^23: rounds to the nearest */
    const vfloat n = (x * 1.44269504088896341f + shifter) - shifter;
    const vfloat r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
    vfloat p = (vfloat){} + 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const vint bits = (__builtin_convertvector(n, vint) + 127) << 23;
    return p * (vfloat)bits;
}

/* The lanes of x, at most `limit`. */
static inline vfloat at_most(vfloat x, float limit) {
    const vint high = x > limit;
    return (vfloat)(((vint)x & ~high) | ((vint)((vfloat){} + limit) & high));
}

static inline vfloat load(const float *p) {
    vfloat v;
    memcpy(&v, p, sizeof v);
    return v;
}

typedef struct {
    const float *u, *delta, *A, *B, *C, *D, *z; /* D and z NULL: no output gate */
    float *y;
    int64_t first, last; /* sequences [first, last) of batch * d_inner */
    int64_t d_inner, length, d_state;
} Work;

typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

/* The sum of the lanes, by halving (a shuffle-and-add tree, not dependent adds). */
static inline float lane_sum(vfloat v) {
    v8 e;
#if VEC == 16
    v8 f;
    memcpy(&e, &v, sizeof e);
    memcpy(&f, (const char *)&v + sizeof e, sizeof f);
    e += f;
#else
    e = v;
#endif
    v4 a, b;
    memcpy(&a, &e, sizeof a);
    memcpy(&b, (const char *)&e + sizeof a, sizeof b);
    a += b;
    return (a[0] + a[2]) + (a[1] + a[3]);
}

/* (y + d u) * SiLU(z), lane by lane; exp's argument is held at 80, where z / (1 + e^-z)
 * is already 0 to float32 precision (e^80 does not overflow). */
static inline vfloat gated(vfloat y, vfloat u, vfloat z, float d) {
    return (y + d * u) * z / (1.0f + exp_vec(at_most(-z, 80.0f)));
}

/* y <- (y + d u) * SiLU(z) over one sequence of `length` values. */
static void gate_sequence(float *y, const float *u, const float *z, float d, int64_t length) {
    int64_t t = 0;
    for (; t + VEC <= length; t += VEC) {
        const vfloat out = gated(load(y + t), load(u + t), load(z + t), d);
        memcpy(y + t, &out, sizeof out);
    }
    if (t < length) { /* the last values, through zero-padded vectors */
        const size_t bytes = (size_t)(length - t) * sizeof(float);
        vfloat yv = {}, uv = {}, zv = {};
        memcpy(&yv, y + t, bytes);
        memcpy(&uv, u + t, bytes);
        memcpy(&zv, z + t, bytes);
        const vfloat out = gated(yv, uv, zv, d);
        memcpy(y + t, &out, bytes);
    }
}

/* One (batch, channel) sequence; inlined with a constant `chunks` so that the state stays in
 * registers. */
static inline __attribute__((always_inline)) void scan_sequence(const Work *w, int64_t seq,
                                                                const int64_t chunks) {
    const int64_t n_state = chunks * VEC, length = w->length;
    const int64_t batch = seq / w->d_inner, channel = seq % w->d_inner;
    const float *u = w->u + seq * length, *delta = w->delta + seq * length;
    const float *B = w->B + batch * length * n_state, *C = w->C + batch * length * n_state;
    float *y = w->y + seq * length;
    vfloat h[MAX_CHUNKS], a[MAX_CHUNKS];
    for (int64_t k = 0; k < chunks; ++k) {
        a[k] = load(w->A + channel * n_state + k * VEC);
        h[k] = (vfloat){};
    }
    for (int64_t t = 0; t < length; ++t) {
        const float dt = delta[t], drive = dt * u[t];
        vfloat acc = {};
        for (int64_t k = 0; k < chunks; ++k) {
            const int64_t at = t * n_state + k * VEC;
            h[k] = exp_vec(dt * a[k]) * h[k] + drive * load(B + at);
            acc += load(C + at) * h[k];
        }
        y[t] = lane_sum(acc);
    }
    if (w->z)
        gate_sequence(y, u, w->z + seq * length, w->D[channel], length);
}

static void scan_sequences(const Work *w) {
    const int64_t chunks = w->d_state / VEC;
    for (int64_t seq = w->first; seq < w->last; ++seq) {
        if (chunks == LANES / VEC)
            scan_sequence(w, seq, LANES / VEC); /* d_state 16, the common case */
        else
            scan_sequence(w, seq, chunks);
    }
}

static void *run_work(void *arg) {
    scan_sequences((const Work *)arg);
    return NULL;
}

/* Returns 0 on success, 1 if d_state or threads is out of range or only one of D, z is given. */
int selective_scan_f32(const float *u, const float *delta, const float *A, const float *B,
                       const float *C, const float *D, const float *z, float *y, int64_t batch,
                       int64_t d_inner, int64_t length, int64_t d_state, int threads) {
    if (d_state < 1 || d_state % LANES || d_state > MAX_STATE || threads < 1 ||
        threads > MAX_THREADS || (D == NULL) != (z == NULL))
        return 1;
    const int64_t sequences = batch * d_inner;
    if (threads > sequences) threads = (int)sequences;
    Work work[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    for (int i = 0; i < threads; ++i) {
        work[i] = (Work){u, delta, A, B, C, D, z, y, sequences * i / threads,
                         sequences * (i + 1) / threads, d_inner, length, d_state};
    }
    int started = 0;
    for (int i = 1; i < threads; ++i) {
        if (pthread_create(&ids[i], NULL, run_work, &work[i]) != 0) break;
        started = i;
    }
    scan_sequences(&work[0]);
    for (int i = started + 1; i < threads; ++i) scan_sequences(&work[i]); /* not started */
    for (int i = 1; i <= started; ++i) pthread_join(ids[i], NULL);
    return 0;
}
