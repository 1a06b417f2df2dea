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
//   Each thread takes float4 i, i + stride, ... (stride = all threads of the grid), STREAM_ILP of
//   them per trip with every load issued before the first use: one 16-byte load in flight per
//   thread is too few to cover HBM latency at full bandwidth.
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

// Independent float4 loads in flight per thread per trip.
#define STREAM_ILP 4

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

// Runs op.template step<K>(i, stride) over this thread's float4 indices, K = STREAM_ILP at a time
// while a full group fits, then one at a time.
template <typename Op>
__device__ __forceinline__ void grid_stride(u64 n4, Op& op) {
    const u64 stride = grid_threads();
    u64 i = global_thread();
    for (; i + (STREAM_ILP - 1) * stride < n4; i += STREAM_ILP * stride) {
        op.template step<STREAM_ILP>(i, stride);
    }
    for (; i < n4; i += stride) {
        op.template step<1>(i, stride);
    }
}

struct Copy {
    const float4* __restrict__ a;
    float4* __restrict__ c;
    template <int K>
    __device__ __forceinline__ void step(u64 i, u64 stride) {
        float4 x[K];
#pragma unroll
        for (int k = 0; k < K; ++k) x[k] = a[i + k * stride];
#pragma unroll
        for (int k = 0; k < K; ++k) c[i + k * stride] = x[k];
    }
};

struct Scale {
    float4* __restrict__ b;
    const float4* __restrict__ c;
    float s;
    template <int K>
    __device__ __forceinline__ void step(u64 i, u64 stride) {
        float4 x[K];
#pragma unroll
        for (int k = 0; k < K; ++k) x[k] = c[i + k * stride];
#pragma unroll
        for (int k = 0; k < K; ++k) {
            float4 r;
            r.x = s * x[k].x;
            r.y = s * x[k].y;
            r.z = s * x[k].z;
            r.w = s * x[k].w;
            b[i + k * stride] = r;
        }
    }
};

struct Add {
    const float4* __restrict__ a;
    const float4* __restrict__ b;
    float4* __restrict__ c;
    template <int K>
    __device__ __forceinline__ void step(u64 i, u64 stride) {
        float4 x[K], y[K];
#pragma unroll
        for (int k = 0; k < K; ++k) {
            x[k] = a[i + k * stride];
            y[k] = b[i + k * stride];
        }
#pragma unroll
        for (int k = 0; k < K; ++k) {
            float4 r;
            r.x = x[k].x + y[k].x;
            r.y = x[k].y + y[k].y;
            r.z = x[k].z + y[k].z;
            r.w = x[k].w + y[k].w;
            c[i + k * stride] = r;
        }
    }
};

struct Triad {
    float4* __restrict__ a;
    const float4* __restrict__ b;
    const float4* __restrict__ c;
    float s;
    template <int K>
    __device__ __forceinline__ void step(u64 i, u64 stride) {
        float4 y[K], z[K];
#pragma unroll
        for (int k = 0; k < K; ++k) {
            y[k] = b[i + k * stride];
            z[k] = c[i + k * stride];
        }
#pragma unroll
        for (int k = 0; k < K; ++k) {
            float4 r;
            r.x = y[k].x + s * z[k].x;
            r.y = y[k].y + s * z[k].y;
            r.z = y[k].z + s * z[k].z;
            r.w = y[k].w + s * z[k].w;
            a[i + k * stride] = r;
        }
    }
};

struct Read {
    const float4* __restrict__ a;
    float4 sum;  // four running sums: no serial add chain across a float4
    template <int K>
    __device__ __forceinline__ void step(u64 i, u64 stride) {
        float4 x[K];
#pragma unroll
        for (int k = 0; k < K; ++k) x[k] = a[i + k * stride];
#pragma unroll
        for (int k = 0; k < K; ++k) {
            sum.x += x[k].x;
            sum.y += x[k].y;
            sum.z += x[k].z;
            sum.w += x[k].w;
        }
    }
};

extern "C" __global__ void stream_copy(const float* __restrict__ a, float* __restrict__ c, u64 n) {
    Copy op{reinterpret_cast<const float4*>(a), reinterpret_cast<float4*>(c)};
    grid_stride(n >> 2, op);
    const u64 t = tail_index(n);
    if (t < n) {
        c[t] = a[t];
    }
}

extern "C" __global__ void stream_scale(float* __restrict__ b, const float* __restrict__ c, float s,
                                        u64 n) {
    Scale op{reinterpret_cast<float4*>(b), reinterpret_cast<const float4*>(c), s};
    grid_stride(n >> 2, op);
    const u64 t = tail_index(n);
    if (t < n) {
        b[t] = s * c[t];
    }
}

extern "C" __global__ void stream_add(const float* __restrict__ a, const float* __restrict__ b,
                                      float* __restrict__ c, u64 n) {
    Add op{reinterpret_cast<const float4*>(a), reinterpret_cast<const float4*>(b),
           reinterpret_cast<float4*>(c)};
    grid_stride(n >> 2, op);
    const u64 t = tail_index(n);
    if (t < n) {
        c[t] = a[t] + b[t];
    }
}

extern "C" __global__ void stream_triad(float* __restrict__ a, const float* __restrict__ b,
                                        const float* __restrict__ c, float s, u64 n) {
    Triad op{reinterpret_cast<float4*>(a), reinterpret_cast<const float4*>(b),
             reinterpret_cast<const float4*>(c), s};
    grid_stride(n >> 2, op);
    const u64 t = tail_index(n);
    if (t < n) {
        a[t] = b[t] + s * c[t];
    }
}

extern "C" __global__ void stream_read(const float* __restrict__ a, float* __restrict__ partial,
                                       u64 n) {
    // One shared slot per warp (1024 threads at most → 32 warps).
    __shared__ float warp_sums[32];
    Read op{reinterpret_cast<const float4*>(a), {0.0f, 0.0f, 0.0f, 0.0f}};
    grid_stride(n >> 2, op);
    float sum = (op.sum.x + op.sum.y) + (op.sum.z + op.sum.w);
    const u64 t = tail_index(n);
    if (t < n) {
        sum += a[t];
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        sum += __shfl_down_sync(0xFFFFFFFFu, sum, offset);
    }
    if ((threadIdx.x & 31) == 0) {
        warp_sums[threadIdx.x >> 5] = sum;
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
