// bandwidth.cu — STREAM kernels (float32), BabelStream semantics, 16-byte vector accesses.
//
// No #include: NVRTC compiles this with no headers.
//
// Launch contracts, for every kernel below:
//   grid:  any number of blocks; the backend uses SM count × blocks-per-SM (a tunable geometry,
//          bench/bench_kernels.py tries several), grid-stride loops cover any n.
//   block: a multiple of 32 threads, at most 1024.
//   n:     element count (u64); n % 4 != 0 is fine: the last n % 4 elements are done by the first
//          threads of the grid after the float4 loop. Every array is 16-byte aligned.
//
//   stream_copy (const float* a, float* c, u64 n)                 c[i] = a[i]
//   stream_scale(float* b, const float* c, float s, u64 n)        b[i] = s * c[i]
//   stream_add  (const float* a, const float* b, float* c, u64 n) c[i] = a[i] + b[i]
//   stream_triad(float* a, const float* b, const float* c, float s, u64 n)
//                                                                 a[i] = b[i] + s * c[i]
//   stream_read (const float* a, float* partial, u64 n)
//     partial[blockIdx.x] = sum of the elements this block read (float, summed per thread, then
//     across the block); partial needs gridDim.x floats. The host adds the partials.

typedef unsigned long long u64;

__device__ __forceinline__ u64 global_thread() {
    return (u64)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ u64 grid_threads() {
    return (u64)gridDim.x * blockDim.x;
}

// First element past the float4 part, handled by threads 0..2 of the grid.
__device__ __forceinline__ u64 tail_index(u64 n) {
    return global_thread() + ((n >> 2) << 2);
}

extern "C" __global__ void stream_copy(const float* __restrict__ a, float* __restrict__ c, u64 n) {
    const float4* a4 = reinterpret_cast<const float4*>(a);
    float4* c4 = reinterpret_cast<float4*>(c);
    const u64 n4 = n >> 2;
    const u64 stride = grid_threads();
    for (u64 i = global_thread(); i < n4; i += stride) {
        c4[i] = a4[i];
    }
    const u64 t = tail_index(n);
    if (t < n) {
        c[t] = a[t];
    }
}

extern "C" __global__ void stream_scale(float* __restrict__ b, const float* __restrict__ c, float s,
                                        u64 n) {
    const float4* c4 = reinterpret_cast<const float4*>(c);
    float4* b4 = reinterpret_cast<float4*>(b);
    const u64 n4 = n >> 2;
    const u64 stride = grid_threads();
    for (u64 i = global_thread(); i < n4; i += stride) {
        const float4 v = c4[i];
        float4 r;
        r.x = s * v.x;
        r.y = s * v.y;
        r.z = s * v.z;
        r.w = s * v.w;
        b4[i] = r;
    }
    const u64 t = tail_index(n);
    if (t < n) {
        b[t] = s * c[t];
    }
}

extern "C" __global__ void stream_add(const float* __restrict__ a, const float* __restrict__ b,
                                      float* __restrict__ c, u64 n) {
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* c4 = reinterpret_cast<float4*>(c);
    const u64 n4 = n >> 2;
    const u64 stride = grid_threads();
    for (u64 i = global_thread(); i < n4; i += stride) {
        const float4 x = a4[i];
        const float4 y = b4[i];
        float4 r;
        r.x = x.x + y.x;
        r.y = x.y + y.y;
        r.z = x.z + y.z;
        r.w = x.w + y.w;
        c4[i] = r;
    }
    const u64 t = tail_index(n);
    if (t < n) {
        c[t] = a[t] + b[t];
    }
}

extern "C" __global__ void stream_triad(float* __restrict__ a, const float* __restrict__ b,
                                        const float* __restrict__ c, float s, u64 n) {
    const float4* b4 = reinterpret_cast<const float4*>(b);
    const float4* c4 = reinterpret_cast<const float4*>(c);
    float4* a4 = reinterpret_cast<float4*>(a);
    const u64 n4 = n >> 2;
    const u64 stride = grid_threads();
    for (u64 i = global_thread(); i < n4; i += stride) {
        const float4 y = b4[i];
        const float4 z = c4[i];
        float4 r;
        r.x = y.x + s * z.x;
        r.y = y.y + s * z.y;
        r.z = y.z + s * z.z;
        r.w = y.w + s * z.w;
        a4[i] = r;
    }
    const u64 t = tail_index(n);
    if (t < n) {
        a[t] = b[t] + s * c[t];
    }
}

extern "C" __global__ void stream_read(const float* __restrict__ a, float* __restrict__ partial,
                                       u64 n) {
    // One shared slot per warp (1024 threads at most → 32 warps).
    __shared__ float warp_sums[32];
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const u64 n4 = n >> 2;
    const u64 stride = grid_threads();
    // Four running sums keep four loads in flight per iteration without a serial add chain.
    float sx = 0.0f, sy = 0.0f, sz = 0.0f, sw = 0.0f;
    for (u64 i = global_thread(); i < n4; i += stride) {
        const float4 v = a4[i];
        sx += v.x;
        sy += v.y;
        sz += v.z;
        sw += v.w;
    }
    float sum = (sx + sy) + (sz + sw);
    const u64 t = tail_index(n);
    if (t < n) {
        sum += a[t];
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        sum += __shfl_down_sync(0xFFFFFFFFu, sum, offset);
    }
    const unsigned warp = threadIdx.x >> 5;
    if ((threadIdx.x & 31) == 0) {
        warp_sums[warp] = sum;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float block_sum = 0.0f;
        const unsigned warps = blockDim.x >> 5;
        for (unsigned w = 0; w < warps; ++w) {
            block_sum += warp_sums[w];
        }
        partial[blockIdx.x] = block_sum;
    }
}
