// util.cu — fills, result checks and digests that every stress test uses.
//
// No #include: NVRTC compiles this with no headers. Grid-stride loops with 64-bit indices, so any
// grid covers any n; kernels.py / backends/cuda.py size grids from the SM count.
//
// Launch contracts (grid: any number of blocks; block: a multiple of 32 threads, at most 1024):
//
//   fill_f32(float* buf, u64 n, float value)
//     writes buf[0..n) = value. buf 16-byte aligned.
//
//   fill_uniform_f32(float* buf, u64 n, unsigned seed, float low, float high)
//   fill_uniform_f16(unsigned short* buf, u64 n, unsigned seed, float low, float high)
//     buf[i] = low + (high - low) * u(i), u(i) = (h >> 8) / 2^24 in [0, 1) with
//     h = mix32((u32)i ^ mix32((u32)(i >> 32) ^ seed)): a counter-based hash, so the values depend
//     on (seed, i) only, never on the launch geometry. fp16: rounded to nearest, stored as raw bits.
//
//   count_not_close_f32(const float* buf, u64 n, float expected, float rel_tol, u64* count)
//     *count += number of i < n with !(|buf[i] - expected| <= rel_tol * |expected|) (NaN counts).
//     *count must be zeroed by the caller.
//
//   compare_close_f32(const float* result, const double* ref, u64 n, double rel_tol, double abs_tol,
//                     u64* stats, u64* report_index, double* report_values, unsigned max_report)
//   compare_close_f16(const unsigned short* result, ...same...)   (result: raw IEEE fp16 bits)
//     an element is bad when !(|r - ref| <= abs_tol + rel_tol * |ref|) (NaN in r or ref counts).
//     stats[0] += bad elements; stats[1] = report slots taken (may exceed max_report);
//     stats[2] = max |r - ref| as double bits (atomicMax: non-negative doubles order like u64);
//     stats[3] = max |r - ref| / max(|ref|, abs_tol / rel_tol), as double bits: the error relative
//     to the reference, floored at the tolerance's crossover so that references near zero do not
//     inflate it. NaN errors are left out of both maxima (they are counted). For the first max_report bad elements (in no set order):
//     report_index[s] = i, report_values[2s] = r, report_values[2s+1] = ref.
//     stats (4 × u64) must be zeroed by the caller.
//
//   word_hash(const unsigned* words, u64 n_words, u64* out)
//     *out += sum over i < n_words of mix32(words[i] ^ mix32((u32)i * 0x9E3779B9)) (mod 2^64),
//     exactly gpuhealth.patterns.word_digest. words 16-byte aligned; *out zeroed by the caller.

typedef unsigned long long u64;

__device__ __forceinline__ u64 global_thread() {
    return (u64)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ u64 grid_threads() {
    return (u64)gridDim.x * blockDim.x;
}

// lowbias32 (Chris Wellons): the same mix as gpuhealth.patterns._mix32.
__device__ __forceinline__ unsigned int mix32(unsigned int x) {
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}

__device__ __forceinline__ u64 warp_sum(u64 v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        v += __shfl_down_sync(0xFFFFFFFFu, v, offset);
    }
    return v;
}

extern "C" __global__ void fill_f32(float* buf, u64 n, float value) {
    const u64 n4 = n >> 2;
    const u64 stride = grid_threads();
    float4 v;
    v.x = value;
    v.y = value;
    v.z = value;
    v.w = value;
    float4* buf4 = reinterpret_cast<float4*>(buf);
    for (u64 i = global_thread(); i < n4; i += stride) {
        buf4[i] = v;
    }
    const u64 tail = global_thread() + (n4 << 2);
    if (tail < n) {
        buf[tail] = value;
    }
}

__device__ __forceinline__ float uniform_at(u64 i, unsigned int seed, float low, float span) {
    const unsigned int h = mix32((unsigned int)i ^ mix32((unsigned int)(i >> 32) ^ seed));
    return low + span * ((float)(h >> 8) * (1.0f / 16777216.0f));
}

extern "C" __global__ void fill_uniform_f32(float* buf, u64 n, unsigned int seed, float low,
                                            float high) {
    const float span = high - low;
    const u64 stride = grid_threads();
    for (u64 i = global_thread(); i < n; i += stride) {
        buf[i] = uniform_at(i, seed, low, span);
    }
}

extern "C" __global__ void fill_uniform_f16(unsigned short* buf, u64 n, unsigned int seed,
                                            float low, float high) {
    const float span = high - low;
    const u64 stride = grid_threads();
    for (u64 i = global_thread(); i < n; i += stride) {
        unsigned short h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(uniform_at(i, seed, low, span)));
        buf[i] = h;
    }
}

__device__ __forceinline__ unsigned not_close(float x, float expected, float tol) {
    return !(fabsf(x - expected) <= tol) ? 1u : 0u;
}

extern "C" __global__ void count_not_close_f32(
    const float* __restrict__ buf, u64 n, float expected, float rel_tol, u64* count) {
    const float tol = rel_tol * fabsf(expected);
    const u64 n4 = n >> 2;
    const u64 stride = grid_threads();
    const float4* buf4 = reinterpret_cast<const float4*>(buf);
    u64 bad = 0;
    for (u64 i = global_thread(); i < n4; i += stride) {
        const float4 v = buf4[i];
        bad += not_close(v.x, expected, tol) + not_close(v.y, expected, tol) +
               not_close(v.z, expected, tol) + not_close(v.w, expected, tol);
    }
    const u64 tail = global_thread() + (n4 << 2);
    if (tail < n) {
        bad += not_close(buf[tail], expected, tol);
    }
    bad = warp_sum(bad);
    if ((threadIdx.x & 31) == 0 && bad != 0) {
        atomicAdd(count, bad);
    }
}

// fp16 bits -> float without cuda_fp16.h.
__device__ __forceinline__ float half_bits_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ double load_result(const float* r, u64 i) { return (double)r[i]; }

__device__ __forceinline__ double load_result(const unsigned short* r, u64 i) {
    return (double)half_bits_to_float(r[i]);
}

template <typename T>
__device__ __forceinline__ void compare_close_body(
    const T* __restrict__ result, const double* __restrict__ ref, u64 n, double rel_tol,
    double abs_tol, u64* stats, u64* report_index, double* report_values, unsigned max_report) {
    const u64 stride = grid_threads();
    u64 bad = 0;
    double max_abs = 0.0;
    double max_rel = 0.0;
    for (u64 i = global_thread(); i < n; i += stride) {
        const double r = load_result(result, i);
        const double e = ref[i];
        const double err = fabs(r - e);
        if (err > max_abs) {
            max_abs = err;
        }
        const double rel = err / fmax(fabs(e), abs_tol / rel_tol);
        if (rel > max_rel) {
            max_rel = rel;
        }
        if (!(err <= abs_tol + rel_tol * fabs(e))) {
            ++bad;
            // Read before the atomic so that a card with millions of bad elements does not
            // serialise on the slot counter.
            if (*(volatile u64*)&stats[1] < max_report) {
                const u64 slot = atomicAdd(&stats[1], 1ull);
                if (slot < max_report) {
                    report_index[slot] = i;
                    report_values[2 * slot] = r;
                    report_values[2 * slot + 1] = e;
                }
            }
        }
    }
    if (bad != 0) {
        atomicAdd(&stats[0], bad);
    }
    if (max_abs > 0.0) {
        atomicMax(&stats[2], (u64)__double_as_longlong(max_abs));
    }
    if (max_rel > 0.0) {
        atomicMax(&stats[3], (u64)__double_as_longlong(max_rel));
    }
}

extern "C" __global__ void compare_close_f32(
    const float* __restrict__ result, const double* __restrict__ ref, u64 n, double rel_tol,
    double abs_tol, u64* stats, u64* report_index, double* report_values, unsigned max_report) {
    compare_close_body(result, ref, n, rel_tol, abs_tol, stats, report_index, report_values,
                       max_report);
}

extern "C" __global__ void compare_close_f16(
    const unsigned short* __restrict__ result, const double* __restrict__ ref, u64 n,
    double rel_tol, double abs_tol, u64* stats, u64* report_index, double* report_values,
    unsigned max_report) {
    compare_close_body(result, ref, n, rel_tol, abs_tol, stats, report_index, report_values,
                       max_report);
}

__device__ __forceinline__ u64 word_term(unsigned int w, u64 i) {
    return (u64)mix32(w ^ mix32((unsigned int)i * 0x9E3779B9u));
}

extern "C" __global__ void word_hash(const unsigned int* __restrict__ words, u64 n_words, u64* out) {
    const u64 n4 = n_words >> 2;
    const u64 stride = grid_threads();
    const uint4* words4 = reinterpret_cast<const uint4*>(words);
    u64 sum = 0;
    for (u64 q = global_thread(); q < n4; q += stride) {
        const uint4 v = words4[q];
        const u64 i = q << 2;
        sum += word_term(v.x, i) + word_term(v.y, i + 1) + word_term(v.z, i + 2) +
               word_term(v.w, i + 3);
    }
    const u64 tail = global_thread() + (n4 << 2);
    if (tail < n_words) {
        sum += word_term(words[tail], tail);
    }
    sum = warp_sum(sum);
    if ((threadIdx.x & 31) == 0 && sum != 0) {
        atomicAdd(out, sum);
    }
}
