// gemm.cu — a verified tensor-core GEMM: C = A · Btᵀ with mma.sync m16n8k16 (inline PTX).
//
// No #include: NVRTC compiles this with no headers. A verification kernel: correctness first,
// then reasonable speed (shared-memory tiles, register prefetch of the next tile).
//
// Launch contract:
//   gemm_f16_tn(const unsigned short* A, const unsigned short* Bt, float* C, int n)
//     A, Bt: n×n row-major raw IEEE fp16 bits; C: n×n row-major float32.
//     C[i][j] = Σ_k A[i][k] · Bt[j][k]  (fp16 products, f32 accumulation).
//     n a multiple of 64; grid (n/64, n/64): blockIdx.x = column tile, blockIdx.y = row tile;
//     block 128 threads (4 warps, each a 32×32 quarter of the 64×64 tile).
//     Needs sm_75 (two m16n8k8) or sm_80+ (m16n8k16); older archs write NaN.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type";
// g = lane >> 2, t = lane & 3; each f16x2 register holds the lower column/row in its low half):
//   A (16×16, row): reg0 = A[g][2t..2t+1], reg1 = A[g+8][2t..], reg2 = A[g][2t+8..],
//                   reg3 = A[g+8][2t+8..]
//   B (16×8, col):  reg0 = B[2t..2t+1][g], reg1 = B[2t+8..2t+9][g]   — B[k][j] = Bt[j][k], so a
//                   B register is two neighbouring halves of one Bt row.
//   C (16×8, f32):  c0,c1 = C[g][2t], C[g][2t+1]; c2,c3 = C[g+8][2t], C[g+8][2t+1]

#define GEMM_TILE 64
#define GEMM_BK 32
// Shared rows of 32 halves padded to 40 (20 words): the 8 groups of a warp's fragment loads then
// fall on distinct banks.
#define GEMM_ROW_WORDS 20
#define GEMM_THREADS 128

__device__ __forceinline__ void mma_16816(float* d, const unsigned int* a, const unsigned int* b) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif __CUDA_ARCH__ >= 750
    // k16 = two k8 steps: a[0..1]/b[0] cover k 0..7, a[2..3]/b[1] cover k 8..15.
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

// Each thread moves two 16-byte chunks (8 halves) of the A tile and two of the Bt tile per k step:
// chunk c = threadIdx.x + 128*r covers tile row c >> 2, halves (c & 3)*8 .. +7.
__device__ __forceinline__ void load_tile(const unsigned short* __restrict__ m, int n, int row0,
                                          int k0, uint4 (&regs)[2]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int c = threadIdx.x + GEMM_THREADS * r;
        const int row = row0 + (c >> 2);
        const int col = k0 + (c & 3) * 8;
        regs[r] = *reinterpret_cast<const uint4*>(m + (size_t)row * n + col);
    }
}

__device__ __forceinline__ void store_tile(unsigned int* tile, const uint4 (&regs)[2]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int c = threadIdx.x + GEMM_THREADS * r;
        *reinterpret_cast<uint4*>(tile + (c >> 2) * GEMM_ROW_WORDS + (c & 3) * 4) = regs[r];
    }
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    gemm_f16_tn(const unsigned short* __restrict__ A, const unsigned short* __restrict__ Bt,
                float* __restrict__ C, int n) {
    // Words of two halves: element (row, k) sits in word row*GEMM_ROW_WORDS + k/2.
    __shared__ __align__(16) unsigned int As[GEMM_TILE * GEMM_ROW_WORDS];
    __shared__ __align__(16) unsigned int Bs[GEMM_TILE * GEMM_ROW_WORDS];

    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int g = lane >> 2;
    const int t = lane & 3;
    const int wm = (warp >> 1) * 32;  // warp's rows within the tile
    const int wn = (warp & 1) * 32;   // warp's columns within the tile
    const int row0 = blockIdx.y * GEMM_TILE;
    const int col0 = blockIdx.x * GEMM_TILE;

    float acc[2][4][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                acc[mt][nt][i] = 0.0f;
            }
        }
    }

    uint4 ra[2], rb[2];
    load_tile(A, n, row0, 0, ra);
    load_tile(Bt, n, col0, 0, rb);
    for (int k0 = 0; k0 < n; k0 += GEMM_BK) {
        store_tile(As, ra);
        store_tile(Bs, rb);
        __syncthreads();
        if (k0 + GEMM_BK < n) {  // next tile in flight while this one is multiplied
            load_tile(A, n, row0, k0 + GEMM_BK, ra);
            load_tile(Bt, n, col0, k0 + GEMM_BK, rb);
        }
#pragma unroll
        for (int kw = 0; kw < GEMM_BK / 2; kw += 8) {  // kw: word offset of the k16 step
            unsigned int af[2][4];
            unsigned int bf[4][2];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                const unsigned int* lo = As + (wm + mt * 16 + g) * GEMM_ROW_WORDS + kw + t;
                const unsigned int* hi = lo + 8 * GEMM_ROW_WORDS;
                af[mt][0] = lo[0];
                af[mt][1] = hi[0];
                af[mt][2] = lo[4];
                af[mt][3] = hi[4];
            }
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) {
                const unsigned int* row = Bs + (wn + nt * 8 + g) * GEMM_ROW_WORDS + kw + t;
                bf[nt][0] = row[0];
                bf[nt][1] = row[4];
            }
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
                for (int nt = 0; nt < 4; ++nt) {
                    mma_16816(acc[mt][nt], af[mt], bf[nt]);
                }
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
            const int row = row0 + wm + mt * 16 + g;
            const int col = col0 + wn + nt * 8 + 2 * t;
            float2 top, bottom;
            top.x = acc[mt][nt][0];
            top.y = acc[mt][nt][1];
            bottom.x = acc[mt][nt][2];
            bottom.y = acc[mt][nt][3];
            *reinterpret_cast<float2*>(C + (size_t)row * n + col) = top;
            *reinterpret_cast<float2*>(C + (size_t)(row + 8) * n + col) = bottom;
        }
    }
}
