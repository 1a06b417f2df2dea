// memtest.cu — memory-test patterns written and checked word by word at memory bandwidth.
//
// No #include: NVRTC compiles this with no headers. The value of every 32-bit word is a pure
// function of its index, bit for bit gpuhealth.patterns.expected_words():
//   PATTERN_WALKING_ONES (0): 1 << ((lo + (param & 31)) & 31)
//   PATTERN_CONSTANT     (1): param
//   PATTERN_ADDRESS      (2): address = base + 4*i; (u32)address ^ (u32)(address >> 32)
//   PATTERN_RANDOM       (3): mix32(lo ^ (hi * 0x9E3779B9) ^ param)      (param = seed)
//   then, when invert != 0, the word is complemented.
// where i is the word index from the start of the buffer, lo/hi its low/high 32 bits and base the
// buffer's device address. The codes come from gpuhealth.patterns.PATTERN_CODES as -D defines.
//
// Launch contracts:
//   grid:  any number of blocks (the backend uses SM count × blocks-per-SM); grid-stride loops.
//   block: any multiple of 32 threads, at most 1024.
//   buf:   16-byte aligned; n_words % 4 != 0 is fine (the last words are done after the uint4 loop).
//
//   memtest_write(unsigned* buf, u64 n_words, int code, unsigned param, unsigned invert, u64 base)
//     writes buf[i] = pattern(i) for i < n_words.
//
//   memtest_check(unsigned* buf, u64 n_words, int code, unsigned param, unsigned invert, u64 base,
//                 int rw_code, unsigned rw_param, unsigned rw_invert,
//                 u64* counters, u64* report, unsigned max_report)
//     reads every word and compares it with pattern(i). counters[0] += mismatching words;
//     counters[1] = report slots taken (may exceed max_report). For the first max_report
//     mismatches (in no set order): report[3s] = device address of the word, report[3s+1] =
//     expected, report[3s+2] = actual. When rw_code != PATTERN_NONE (-1), the same pass then
//     writes the rewrite pattern (rw_code, rw_param, rw_invert) into every word (moving
//     inversions: check one pattern and write the next in one read+write sweep).
//     counters (2 × u64) must be zeroed by the caller.

typedef unsigned long long u64;

#ifndef PATTERN_WALKING_ONES
#define PATTERN_WALKING_ONES 0
#endif
#ifndef PATTERN_CONSTANT
#define PATTERN_CONSTANT 1
#endif
#ifndef PATTERN_ADDRESS
#define PATTERN_ADDRESS 2
#endif
#ifndef PATTERN_RANDOM
#define PATTERN_RANDOM 3
#endif
#define PATTERN_NONE (-1)

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

// inv is 0 or 0xFFFFFFFF, so that inverting costs one XOR.
template <int CODE>
__device__ __forceinline__ unsigned int pattern_word(u64 i, unsigned int param, unsigned int inv,
                                                     u64 base) {
    const unsigned int lo = (unsigned int)i;
    unsigned int w;
    if constexpr (CODE == PATTERN_WALKING_ONES) {
        w = 1u << ((lo + (param & 31u)) & 31u);
    } else if constexpr (CODE == PATTERN_CONSTANT) {
        w = param;
    } else if constexpr (CODE == PATTERN_ADDRESS) {
        const u64 address = base + (i << 2);
        w = (unsigned int)address ^ (unsigned int)(address >> 32);
    } else {
        const unsigned int hi = (unsigned int)(i >> 32);
        w = mix32(lo ^ (hi * 0x9E3779B9u) ^ param);
    }
    return w ^ inv;
}

template <int CODE>
__device__ __forceinline__ uint4 pattern_quad(u64 i, unsigned int param, unsigned int inv, u64 base) {
    uint4 v;
    v.x = pattern_word<CODE>(i, param, inv, base);
    v.y = pattern_word<CODE>(i + 1, param, inv, base);
    v.z = pattern_word<CODE>(i + 2, param, inv, base);
    v.w = pattern_word<CODE>(i + 3, param, inv, base);
    return v;
}

template <int CODE>
__device__ void write_body(unsigned int* buf, u64 n_words, unsigned int param, unsigned int inv,
                           u64 base) {
    uint4* buf4 = reinterpret_cast<uint4*>(buf);
    const u64 n4 = n_words >> 2;
    const u64 stride = grid_threads();
    for (u64 q = global_thread(); q < n4; q += stride) {
        buf4[q] = pattern_quad<CODE>(q << 2, param, inv, base);
    }
    const u64 t = global_thread() + (n4 << 2);
    if (t < n_words) {
        buf[t] = pattern_word<CODE>(t, param, inv, base);
    }
}

extern "C" __global__ void memtest_write(unsigned int* buf, u64 n_words, int code,
                                         unsigned int param, unsigned int invert, u64 base) {
    const unsigned int inv = invert ? 0xFFFFFFFFu : 0u;
    switch (code) {
        case PATTERN_WALKING_ONES:
            write_body<PATTERN_WALKING_ONES>(buf, n_words, param, inv, base);
            break;
        case PATTERN_CONSTANT:
            write_body<PATTERN_CONSTANT>(buf, n_words, param, inv, base);
            break;
        case PATTERN_ADDRESS:
            write_body<PATTERN_ADDRESS>(buf, n_words, param, inv, base);
            break;
        case PATTERN_RANDOM:
            write_body<PATTERN_RANDOM>(buf, n_words, param, inv, base);
            break;
        default:
            break;
    }
}

struct Report {
    u64* counters;
    u64* slots;
    unsigned int max_report;
    u64 base;
};

// Records one bad word; returns 1 when actual != expected.
__device__ __forceinline__ u64 report_word(const Report& r, u64 i, unsigned int expected,
                                           unsigned int actual) {
    if (actual == expected) {
        return 0;
    }
    // Read before the atomic so that a card full of bad words does not serialise on it.
    if (*(volatile u64*)&r.counters[1] < r.max_report) {
        const u64 slot = atomicAdd(&r.counters[1], 1ull);
        if (slot < r.max_report) {
            r.slots[3 * slot] = r.base + (i << 2);
            r.slots[3 * slot + 1] = expected;
            r.slots[3 * slot + 2] = actual;
        }
    }
    return 1;
}

template <int CODE, int RW>
__device__ void check_body(unsigned int* buf, u64 n_words, unsigned int param, unsigned int inv,
                           unsigned int rw_param, unsigned int rw_inv, const Report& rep) {
    uint4* buf4 = reinterpret_cast<uint4*>(buf);
    const u64 n4 = n_words >> 2;
    const u64 stride = grid_threads();
    const u64 base = rep.base;
    u64 bad = 0;
    for (u64 q = global_thread(); q < n4; q += stride) {
        const u64 i = q << 2;
        const uint4 v = buf4[q];
        const uint4 e = pattern_quad<CODE>(i, param, inv, base);
        if (((v.x ^ e.x) | (v.y ^ e.y) | (v.z ^ e.z) | (v.w ^ e.w)) != 0u) {
            bad += report_word(rep, i, e.x, v.x) + report_word(rep, i + 1, e.y, v.y) +
                   report_word(rep, i + 2, e.z, v.z) + report_word(rep, i + 3, e.w, v.w);
        }
        if constexpr (RW != PATTERN_NONE) {
            buf4[q] = pattern_quad<RW>(i, rw_param, rw_inv, base);
        }
    }
    const u64 t = global_thread() + (n4 << 2);
    if (t < n_words) {
        bad += report_word(rep, t, pattern_word<CODE>(t, param, inv, base), buf[t]);
        if constexpr (RW != PATTERN_NONE) {
            buf[t] = pattern_word<RW>(t, rw_param, rw_inv, base);
        }
    }
    if (bad != 0) {
        atomicAdd(&rep.counters[0], bad);
    }
}

template <int CODE>
__device__ void check_dispatch(unsigned int* buf, u64 n_words, unsigned int param,
                               unsigned int inv, int rw_code, unsigned int rw_param,
                               unsigned int rw_inv, const Report& rep) {
    switch (rw_code) {
        case PATTERN_WALKING_ONES:
            check_body<CODE, PATTERN_WALKING_ONES>(buf, n_words, param, inv, rw_param, rw_inv, rep);
            break;
        case PATTERN_CONSTANT:
            check_body<CODE, PATTERN_CONSTANT>(buf, n_words, param, inv, rw_param, rw_inv, rep);
            break;
        case PATTERN_ADDRESS:
            check_body<CODE, PATTERN_ADDRESS>(buf, n_words, param, inv, rw_param, rw_inv, rep);
            break;
        case PATTERN_RANDOM:
            check_body<CODE, PATTERN_RANDOM>(buf, n_words, param, inv, rw_param, rw_inv, rep);
            break;
        default:
            check_body<CODE, PATTERN_NONE>(buf, n_words, param, inv, rw_param, rw_inv, rep);
            break;
    }
}

extern "C" __global__ void memtest_check(unsigned int* buf, u64 n_words, int code,
                                         unsigned int param, unsigned int invert, u64 base,
                                         int rw_code, unsigned int rw_param,
                                         unsigned int rw_invert, u64* counters, u64* report,
                                         unsigned int max_report) {
    const unsigned int inv = invert ? 0xFFFFFFFFu : 0u;
    const unsigned int rw_inv = rw_invert ? 0xFFFFFFFFu : 0u;
    Report rep;
    rep.counters = counters;
    rep.slots = report;
    rep.max_report = max_report;
    rep.base = base;
    switch (code) {
        case PATTERN_WALKING_ONES:
            check_dispatch<PATTERN_WALKING_ONES>(buf, n_words, param, inv, rw_code, rw_param,
                                                 rw_inv, rep);
            break;
        case PATTERN_CONSTANT:
            check_dispatch<PATTERN_CONSTANT>(buf, n_words, param, inv, rw_code, rw_param, rw_inv,
                                             rep);
            break;
        case PATTERN_ADDRESS:
            check_dispatch<PATTERN_ADDRESS>(buf, n_words, param, inv, rw_code, rw_param, rw_inv,
                                            rep);
            break;
        case PATTERN_RANDOM:
            check_dispatch<PATTERN_RANDOM>(buf, n_words, param, inv, rw_code, rw_param, rw_inv,
                                           rep);
            break;
        default:
            break;
    }
}
