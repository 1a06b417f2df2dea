// compute.cu — arithmetic throughput loops whose results are known exactly in advance.
//
// No #include: NVRTC compiles this with no headers; tensor cores and %smid through inline PTX.
// FMA_CHAINS and MMA_ACCUMULATORS come from gpuhealth/backends/base.py as -D defines.
//
// Launch contracts:
//   fma_loop(float* out, unsigned* smids, int iterations, float c)
//     grid: any; block: any up to 1024. Every thread runs FMA_CHAINS independent chains
//     x <- fma(x, x, c) for `iterations` steps, chain j starting at (float)(0.1 + 0.2*j)
//     (base.fma_start). Writes out[t*FMA_CHAINS + j] (t = global thread index; out holds
//     gridDim.x*blockDim.x*FMA_CHAINS floats) and smids[blockIdx.x] = %smid of the block.
//     FLOPs: threads × FMA_CHAINS × iterations × 2. Every thread must produce the same values.
//
//   mma_loop(float* out, unsigned* smids, int iterations)
//     grid: any; block: a multiple of 32 threads, at most 1024. Each warp holds MMA_ACCUMULATORS
//     independent 16×8 f32 accumulators and runs `iterations` rounds of one
//     mma.sync.m16n8k16.row.col.f32.f16.f16.f32 per accumulator, B alternating +B, −B so that
//     every accumulator comes back to its start exactly (small-integer fp16 inputs: every sum is
//     exact). An odd last round multiplies by a zero B (same work, no change). Writes
//     out[t] = Σ |acc − start| over the thread's accumulator elements (exactly 0 on a healthy
//     card; t = global thread index) and smids[blockIdx.x].
//     FLOPs: blocks × (threads/32) × iterations × MMA_ACCUMULATORS × 16×8×16×2.
//     Needs sm_75 (two m16n8k8) or sm_80+ (m16n8k16); older archs write NaN.

#ifndef FMA_CHAINS
#define FMA_CHAINS 8
#endif
#ifndef MMA_ACCUMULATORS
#define MMA_ACCUMULATORS 4
#endif

// Steps per trip of the unrolled FMA loop: FMA_CHAINS × FMA_UNROLL FFMAs per loop branch.
#define FMA_UNROLL 32

__device__ __forceinline__ unsigned int sm_id() {
    unsigned int id;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
    return id;
}

__device__ __forceinline__ unsigned long long global_thread() {
    return (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
}

extern "C" __global__ void fma_loop(float* __restrict__ out, unsigned int* __restrict__ smids,
                                    int iterations, float c) {
    float x[FMA_CHAINS];
#pragma unroll
    for (int j = 0; j < FMA_CHAINS; ++j) {
        // Same double arithmetic as Python's 0.1 + 0.2 * j, then rounded to float.
        x[j] = (float)(0.1 + 0.2 * (double)j);
    }
    int it = 0;
    for (; it + FMA_UNROLL <= iterations; it += FMA_UNROLL) {
#pragma unroll
        for (int u = 0; u < FMA_UNROLL; ++u) {
#pragma unroll
            for (int j = 0; j < FMA_CHAINS; ++j) {
                x[j] = __fmaf_rn(x[j], x[j], c);
            }
        }
    }
    for (; it < iterations; ++it) {
#pragma unroll
        for (int j = 0; j < FMA_CHAINS; ++j) {
            x[j] = __fmaf_rn(x[j], x[j], c);
        }
    }
    const unsigned long long t = global_thread();
#pragma unroll
    for (int j = 0; j < FMA_CHAINS; ++j) {
        out[t * FMA_CHAINS + j] = x[j];
    }
    if (threadIdx.x == 0) {
        smids[blockIdx.x] = sm_id();
    }
}

__device__ __forceinline__ unsigned int f16x2(float lo, float hi) {
    unsigned short l, h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(l) : "f"(lo));
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(hi));
    return (unsigned int)l | ((unsigned int)h << 16);
}

// d += A·B for one m16n8k16 tile: a = 4 f16x2 registers, b = 2 f16x2 registers, d = 4 floats,
// in the PTX ISA fragment layout. On sm_75 the k16 step is two k8 steps: a[0..1]/b[0] hold
// k 0..7 and a[2..3]/b[1] hold k 8..15 in the k16 layout, which is exactly the k8 layout.
__device__ __forceinline__ void mma_16816(float* d, const unsigned int* a, const unsigned int* b) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif __CUDA_ARCH__ >= 750
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(b[0]));
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[2]), "r"(a[3]), "r"(b[1]));
#else
    const float nan = __int_as_float(0x7FC00000);
    d[0] = nan;
    d[1] = nan;
    d[2] = nan;
    d[3] = nan;
#endif
}

// Start value of accumulator element (k, i) of a lane; recomputed at the end rather than kept,
// which saves MMA_ACCUMULATORS × 4 registers during the loop.
__device__ __forceinline__ float mma_start(int lane, int k, int i) {
    return (float)((lane + 3 * k + i) % 7 - 3);
}

__device__ __forceinline__ void mma_round(float (&acc)[MMA_ACCUMULATORS][4], const unsigned int* a,
                                          const unsigned int* b) {
#pragma unroll
    for (int k = 0; k < MMA_ACCUMULATORS; ++k) {
        mma_16816(acc[k], a, b);
    }
}

extern "C" __global__ void mma_loop(float* __restrict__ out, unsigned int* __restrict__ smids,
                                    int iterations) {
    const int lane = threadIdx.x & 31;
    // Small integers: |A·B| ≤ 16 × 1 × 2 per element, so every partial sum is exact in f32.
    unsigned int a[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        a[r] = f16x2((float)((lane + 2 * r) % 3 - 1), (float)((lane + 2 * r + 1) % 3 - 1));
    }
    unsigned int b[2], nb[2];
    const unsigned int zero[2] = {0u, 0u};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        b[r] = f16x2((float)((3 * lane + 2 * r) % 5 - 2), (float)((3 * lane + 2 * r + 1) % 5 - 2));
        nb[r] = b[r] ^ 0x80008000u;  // flip the sign of both halves: −B exactly
    }
    float acc[MMA_ACCUMULATORS][4];
#pragma unroll
    for (int k = 0; k < MMA_ACCUMULATORS; ++k) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            acc[k][i] = mma_start(lane, k, i);
        }
    }
    int it = 0;
    for (; it + 4 <= iterations; it += 4) {
        mma_round(acc, a, b);
        mma_round(acc, a, nb);
        mma_round(acc, a, b);
        mma_round(acc, a, nb);
    }
    for (; it + 2 <= iterations; it += 2) {
        mma_round(acc, a, b);
        mma_round(acc, a, nb);
    }
    if (it < iterations) {
        mma_round(acc, a, zero);
    }
    float drift = 0.0f;
#pragma unroll
    for (int k = 0; k < MMA_ACCUMULATORS; ++k) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            drift += fabsf(acc[k][i] - mma_start(lane, k, i));
        }
    }
    out[global_thread()] = drift;
    if (threadIdx.x == 0) {
        smids[blockIdx.x] = sm_id();
    }
}
