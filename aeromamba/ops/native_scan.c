/* Selective scan for the CPU, float32, forward and backward, compiled on first use
 * (native_scan.py).
 *
 * For every (batch, channel) sequence, with the state h of d_state values in registers:
 *     h_t = exp(max(delta_t * A, -80)) * h_{t-1} + delta_t * u_t * B_t,   y_t = <C_t, h_t>.
 * u, delta, y: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, L, d_state), so that
 * one step reads d_state contiguous values. Work is split between `threads` POSIX threads.
 * With D (d_inner) and z (batch, d_inner, L) given, each sequence ends with Mamba's output
 * gate, y_t <- (y_t + D u_t) * SiLU(z_t), while it is in cache.
 *
 * For training, the forward pass also stores the state entering every `chunk` steps; the
 * backward pass recomputes a chunk's states from it into a buffer that stays in L1, then runs
 * the adjoint recurrence lambda_t = C_t dy_t + exp(delta_{t+1} A) * lambda_{t+1} back through
 * the chunk, giving the gradients of u, delta, A, B, C, D and z.
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

static inline void store(float *p, vfloat v) { memcpy(p, &v, sizeof v); }

#define MAX_CHUNK 256 /* time steps between the states kept for the backward pass */

typedef struct {
    const float *u, *delta, *A, *B, *C, *D, *z; /* D and z NULL: no output gate */
    float *y;
    float *states;          /* (sequences, chunks, d_state): the state entering each chunk */
    const float *grad;      /* backward: the gradient of the gated output */
    float *du, *ddelta, *dz, *dB, *dC; /* backward outputs; dB, dC zeroed by the caller */
    float *dA, *dD;         /* backward: this thread's sums over its batch rows, zeroed */
    int64_t first, last;    /* forward: sequences; backward: batch rows [first, last) */
    int64_t d_inner, length, d_state, chunk;
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
    float *states = w->states ? w->states + seq * ((length + w->chunk - 1) / w->chunk) * n_state
                              : NULL;
    vfloat h[MAX_CHUNKS], a[MAX_CHUNKS];
    for (int64_t k = 0; k < chunks; ++k) {
        a[k] = load(w->A + channel * n_state + k * VEC);
        h[k] = (vfloat){};
    }
    for (int64_t s = 0; s < length; s += w->chunk) {
        const int64_t end = s + w->chunk < length ? s + w->chunk : length;
        if (states) /* kept for the backward pass */
            for (int64_t k = 0; k < chunks; ++k) store(states + (s / w->chunk) * n_state + k * VEC, h[k]);
        for (int64_t t = s; t < end; ++t) {
            const float dt = delta[t], drive = dt * u[t];
            vfloat acc = {};
            for (int64_t k = 0; k < chunks; ++k) {
                const int64_t at = t * n_state + k * VEC;
                h[k] = exp_vec(dt * a[k]) * h[k] + drive * load(B + at);
                acc += load(C + at) * h[k];
            }
            y[t] = lane_sum(acc);
        }
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

/* dy_t = g_t SiLU(z_t) and dz_t = g_t (y_t + d u_t) SiLU'(z_t) over n steps, vectorised over
 * time; returns the sum of dy_t u_t (the gradient of d). y is the scan before the gate. */
static float gate_backward(const float *g, const float *y, const float *u, const float *z,
                           float d, int64_t n, float *dy, float *dz) {
    vfloat dd = {};
    for (int64_t t = 0; t < n; t += VEC) {
        const size_t bytes = (size_t)(n - t < VEC ? n - t : VEC) * sizeof(float);
        vfloat gv = {}, yv = {}, uv = {}, zv = {}; /* zero-padded past the end */
        memcpy(&gv, g + t, bytes);
        memcpy(&yv, y + t, bytes);
        memcpy(&uv, u + t, bytes);
        memcpy(&zv, z + t, bytes);
        const vfloat sig = 1.0f / (1.0f + exp_vec(at_most(-zv, 80.0f)));
        const vfloat dyv = gv * zv * sig;
        const vfloat dzv = gv * (yv + d * uv) * sig * (1.0f + zv * (1.0f - sig));
        memcpy(dy + t, &dyv, bytes);
        memcpy(dz + t, &dzv, bytes);
        dd += dyv * uv;
    }
    return lane_sum(dd);
}

/* The backward pass of one (batch, channel) sequence, chunk by chunk from the end; adds to
 * dB, dC (its batch row) and to this thread's dA, dD. Inlined with a constant `chunks`. */
static inline __attribute__((always_inline)) void backward_sequence(const Work *w, int64_t seq,
                                                                    const int64_t chunks) {
    const int64_t n_state = chunks * VEC, length = w->length, size = w->chunk;
    const int64_t batch = seq / w->d_inner, channel = seq % w->d_inner;
    const int64_t offset = seq * length, row = batch * length * n_state;
    const float *u = w->u + offset, *delta = w->delta + offset, *z = w->z + offset;
    const float *g = w->grad + offset, *B = w->B + row, *C = w->C + row;
    float *du = w->du + offset, *ddelta = w->ddelta + offset, *dz = w->dz + offset;
    float *dB = w->dB + row, *dC = w->dC + row;
    const int64_t n_chunks = (length + size - 1) / size;
    const float *states = w->states + seq * n_chunks * n_state;
    const float d = w->D[channel];
    float H[MAX_CHUNK * MAX_STATE], decay[MAX_CHUNK * MAX_STATE], y[MAX_CHUNK], dy[MAX_CHUNK];
    vfloat a[MAX_CHUNKS], carry[MAX_CHUNKS], dA[MAX_CHUNKS];
    for (int64_t k = 0; k < chunks; ++k) {
        a[k] = load(w->A + channel * n_state + k * VEC);
        carry[k] = dA[k] = (vfloat){};
    }
    float dD = 0.0f;
    for (int64_t c = n_chunks - 1; c >= 0; --c) {
        const int64_t s = c * size, n = s + size < length ? size : length - s;
        const float *start = states + c * n_state;
        vfloat h[MAX_CHUNKS];
        for (int64_t k = 0; k < chunks; ++k) h[k] = load(start + k * VEC);
        for (int64_t i = 0; i < n; ++i) { /* the chunk's states and decays, again */
            const int64_t t = s + i;
            const float dt = delta[t], drive = dt * u[t];
            vfloat acc = {};
            for (int64_t k = 0; k < chunks; ++k) {
                const int64_t at = t * n_state + k * VEC, here = i * n_state + k * VEC;
                const vfloat decay_k = exp_vec(dt * a[k]);
                h[k] = decay_k * h[k] + drive * load(B + at);
                store(decay + here, decay_k);
                store(H + here, h[k]);
                acc += load(C + at) * h[k];
            }
            y[i] = lane_sum(acc);
        }
        dD += gate_backward(g + s, y, u + s, z + s, d, n, dy, dz + s);
        for (int64_t i = n - 1; i >= 0; --i) { /* the adjoint recurrence, backwards */
            const int64_t t = s + i;
            const float dt = delta[t], drive = dt * u[t];
            const float *previous = i ? H + (i - 1) * n_state : start;
            vfloat to_drive = {}, to_log_decay = {};
            for (int64_t k = 0; k < chunks; ++k) {
                const int64_t at = t * n_state + k * VEC, here = i * n_state + k * VEC;
                const vfloat lambda = load(C + at) * dy[i] + carry[k];
                const vfloat decay_k = load(decay + here);
                /* d/d(delta_t A) of the decay term, h_{t-1} lambda_t exp(delta_t A) */
                const vfloat q = load(previous + k * VEC) * lambda * decay_k;
                store(dC + at, load(dC + at) + dy[i] * load(H + here));
                store(dB + at, load(dB + at) + drive * lambda);
                to_drive += lambda * load(B + at);
                to_log_decay += a[k] * q;
                dA[k] += dt * q;
                carry[k] = decay_k * lambda;
            }
            const float grad_drive = lane_sum(to_drive);
            du[t] = dy[i] * d + dt * grad_drive;
            ddelta[t] = u[t] * grad_drive + lane_sum(to_log_decay);
        }
    }
    for (int64_t k = 0; k < chunks; ++k) {
        float *out = w->dA + channel * n_state + k * VEC;
        store(out, load(out) + dA[k]);
    }
    w->dD[channel] += dD;
}

/* Whole batch rows per thread: no two threads add to the same row of dB, dC. */
static void backward_rows(const Work *w) {
    const int64_t chunks = w->d_state / VEC;
    for (int64_t seq = w->first * w->d_inner; seq < w->last * w->d_inner; ++seq) {
        if (chunks == LANES / VEC)
            backward_sequence(w, seq, LANES / VEC); /* d_state 16, the common case */
        else
            backward_sequence(w, seq, chunks);
    }
}

typedef void (*Task)(const Work *);
typedef struct {
    Task task;
    const Work *work;
} Job;

static void *run_job(void *arg) {
    const Job *job = (const Job *)arg;
    job->task(job->work);
    return NULL;
}

/* task(&work[i]) for i < threads, on as many POSIX threads (the caller's is one). */
static void run_parallel(Task task, const Work *work, int threads) {
    Job jobs[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started = 0;
    for (int i = 1; i < threads; ++i) {
        jobs[i] = (Job){task, &work[i]};
        if (pthread_create(&ids[i], NULL, run_job, &jobs[i]) != 0) break;
        started = i;
    }
    task(&work[0]);
    for (int i = started + 1; i < threads; ++i) task(&work[i]); /* not started */
    for (int i = 1; i <= started; ++i) pthread_join(ids[i], NULL);
}

static int bad_sizes(int64_t d_state, int64_t chunk, int threads) {
    return d_state < 1 || d_state % LANES || d_state > MAX_STATE || chunk < 1 ||
           chunk > MAX_CHUNK || threads < 1 || threads > MAX_THREADS;
}

/* The forward scan; with `states` (batch * d_inner, ceil(length / chunk), d_state) not NULL,
 * the state entering every chunk of `chunk` steps is stored there for the backward pass.
 * Returns 0 on success, 1 if d_state, chunk or threads is out of range or only one of D, z
 * is given. */
int selective_scan_f32(const float *u, const float *delta, const float *A, const float *B,
                       const float *C, const float *D, const float *z, float *y, float *states,
                       int64_t batch, int64_t d_inner, int64_t length, int64_t d_state,
                       int64_t chunk, int threads) {
    if (bad_sizes(d_state, chunk, threads) || (D == NULL) != (z == NULL)) return 1;
    const int64_t sequences = batch * d_inner;
    if (threads > sequences) threads = (int)sequences;
    Work work[MAX_THREADS];
    for (int i = 0; i < threads; ++i) {
        work[i] = (Work){.u = u, .delta = delta, .A = A, .B = B, .C = C, .D = D, .z = z,
                         .y = y, .states = states, .first = sequences * i / threads,
                         .last = sequences * (i + 1) / threads, .d_inner = d_inner,
                         .length = length, .d_state = d_state, .chunk = chunk};
    }
    run_parallel(scan_sequences, work, threads);
    return 0;
}

/* The gradients of the gated scan's inputs given `grad` (batch, d_inner, L), the gradient of
 * its output, and the `states` its forward pass stored with the same `chunk`: du, ddelta, dz
 * (batch, d_inner, L) written; dB, dC (batch, L, d_state) added to; dA (threads, d_inner,
 * d_state) and dD (threads, d_inner) added to, one slice per thread (the caller sums them).
 * Threads are min(threads, batch). Returns 0 on success, 1 if d_state, chunk or threads is
 * out of range. */
int selective_scan_backward_f32(const float *u, const float *delta, const float *A,
                                const float *B, const float *C, const float *D, const float *z,
                                const float *states, const float *grad, float *du,
                                float *ddelta, float *dA, float *dB, float *dC, float *dD,
                                float *dz, int64_t batch, int64_t d_inner, int64_t length,
                                int64_t d_state, int64_t chunk, int threads) {
    if (bad_sizes(d_state, chunk, threads)) return 1;
    if (threads > batch) threads = (int)batch;
    Work work[MAX_THREADS];
    for (int i = 0; i < threads; ++i) {
        work[i] = (Work){.u = u, .delta = delta, .A = A, .B = B, .C = C, .D = D, .z = z,
                         .states = (float *)states, .grad = grad, .du = du, .ddelta = ddelta,
                         .dz = dz, .dB = dB, .dC = dC, .dA = dA + i * d_inner * d_state,
                         .dD = dD + i * d_inner, .first = batch * i / threads,
                         .last = batch * (i + 1) / threads, .d_inner = d_inner,
                         .length = length, .d_state = d_state, .chunk = chunk};
    }
    run_parallel(backward_rows, work, threads);
    return 0;
}
