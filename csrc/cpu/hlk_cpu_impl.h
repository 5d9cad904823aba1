// The body of the CPU HLKConv forward, included twice by hlk_cpu.cpp: once compiled for
// AVX2 and once for the build's baseline ISA, each copy in its own namespace
// (ISTD_HLK_ISA). No include guard on purpose. Both copies run the same operations in the
// same order without FMA contraction, so they return identical bits.
namespace ISTD_HLK_ISA {
namespace {

// L values processed as one: 32 bytes, i.e. one AVX register or two SSE registers. It is
// a plain struct (not a GCC vector) so that the cores' Acc(0) and scalar conversions work
// unchanged; the fixed-length loops below are what the vectoriser sees.
template <typename T>
struct Lanes {
  static constexpr int L = 32 / static_cast<int>(sizeof(T));
  T v[L];
  Lanes() = default;
  ISTD_INLINE Lanes(T s) {  // NOLINT: implicit on purpose, it is the cores' broadcast
    for (int l = 0; l < L; ++l) v[l] = s;
  }
  ISTD_INLINE Lanes& operator+=(const Lanes& o) {
    for (int l = 0; l < L; ++l) v[l] += o.v[l];
    return *this;
  }
  friend ISTD_INLINE Lanes operator+(Lanes a, const Lanes& b) { return a += b; }
  friend ISTD_INLINE Lanes operator*(const Lanes& a, const Lanes& b) {
    Lanes r;
    for (int l = 0; l < L; ++l) r.v[l] = a.v[l] * b.v[l];
    return r;
  }
};

// Everything one task needs; the packed weights are shared read-only by all threads.
template <typename T>
struct Task {
  using V = Lanes<T>;
  const T* x;
  Strides4 xs;
  T* y;
  Strides4 ys;
  int64_t H, W, G, Cg, Og, nb, nob, t1, t2, P2, R, SR, strips;
  int k1, k2, dil;
  bool padded_lanes;
  const V *w0v, *w1v, *b0v, *b1v, *wav, *wdv, *bpv;
};

template <typename T>
struct Buffers {
  std::vector<Lanes<T>> xbuf, abuf, dbuf, ybuf;
};

// One (n, group, strip) task.
template <typename T>
void run_task(const Task<T>& k, int64_t task, Buffers<T>& bf) {
  using V = Lanes<T>;
  constexpr int L = V::L;
  const T* x = k.x;
  const Strides4 xs = k.xs, ys = k.ys;
  T* y = k.y;
  const int64_t H = k.H, W = k.W, G = k.G, Cg = k.Cg, Og = k.Og, nb = k.nb, nob = k.nob, t1 = k.t1, t2 = k.t2;
  const int64_t P2 = k.P2, R = k.R, SR = k.SR, strips = k.strips;
  const int k1 = k.k1, k2 = k.k2, dil = k.dil;
  const bool padded_lanes = k.padded_lanes;
  std::vector<V>&xbuf = bf.xbuf, &abuf = bf.abuf, &dbuf = bf.dbuf, &ybuf = bf.ybuf;
  const V *w0v = k.w0v, *w1v = k.w1v, *b0v = k.b0v, *b1v = k.b1v, *wav = k.wav, *wdv = k.wdv, *bpv = k.bpv;
  const int64_t s = task % strips, ng = task / strips, gi = ng % G, n = ng / G;
  const int64_t r0 = s * SR, r1 = std::min(H, r0 + SR);
  const int64_t xr0 = std::max<int64_t>(0, r0 - R), xr1 = std::min(H, r1 + R);
  const int64_t ar0 = std::max<int64_t>(0, r0 - P2), ar1 = std::min(H, r1 + P2);
  const int64_t row_v = W * nb;  // lane vectors per buffered row

  // x window, channel-interleaved: [row][col][block]. Only image rows are staged;
  // Plane2D's bounds keep the cores from reading outside them.
  const size_t xsize = static_cast<size_t>((xr1 - xr0) * row_v);
  if (padded_lanes)
    xbuf.assign(xsize, V(T(0)));
  else
    xbuf.resize(xsize);
  for (int64_t c = 0; c < Cg; ++c) {
    const T* xc = x + n * xs.n + (gi * Cg + c) * xs.c;
    const int64_t b = c / L;
    const int l = static_cast<int>(c % L);
    for (int64_t r = xr0; r < xr1; ++r) {
      const T* xr = xc + r * xs.h;
      V* dst = xbuf.data() + (r - xr0) * row_v + b;
      for (int64_t q = 0; q < W; ++q) dst[q * nb].v[l] = xr[q * xs.w];
    }
  }

  abuf.resize(static_cast<size_t>((ar1 - ar0) * row_v));
  for (int64_t b = 0; b < nb; ++b) {
    const Plane2D<V, int64_t, int64_t> xp{xbuf.data() + b, row_v, nb, xr0, 0, H, W};
    const V* wb = w0v + (gi * nb + b) * t1;
    const V bias = b0v[gi * nb + b];
    for (int64_t r = ar0; r < ar1; ++r) {
      V* dst = abuf.data() + (r - ar0) * row_v + b;
      for (int64_t q = 0; q < W; ++q) dst[q * nb] = hlk_a_pixel<V, V, V, int64_t, int64_t>(xp, wb, bias, k1, r, q);
    }
  }

  dbuf.resize(static_cast<size_t>((r1 - r0) * row_v));
  for (int64_t b = 0; b < nb; ++b) {
    const Plane2D<V, int64_t, int64_t> ap{abuf.data() + b, row_v, nb, ar0, 0, H, W};
    const V* wb = w1v + (gi * nb + b) * t2;
    const V bias = b1v[gi * nb + b];
    for (int64_t r = r0; r < r1; ++r) {
      V* dst = dbuf.data() + (r - r0) * row_v + b;
      for (int64_t q = 0; q < W; ++q)
        dst[q * nb] = hlk_d_pixel<V, V, V, int64_t, int64_t>(ap, wb, bias, k2, dil, r, q);
    }
  }

  // Pointwise: per pixel, L outputs at a time; a and d of the pixel are contiguous
  // scalars in the interleaved buffers and broadcast against the weight lanes.
  ybuf.resize(static_cast<size_t>((r1 - r0) * W * nob));
  const V* wa = wav + gi * Cg * nob;
  const V* wd = wdv + gi * Cg * nob;
  const V* bp = bpv + gi * nob;
  const int ncg = static_cast<int>(Cg);
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t q = 0; q < W; ++q) {
      const T* ap = reinterpret_cast<const T*>(abuf.data() + ((r - ar0) * W + q) * nb);
      const T* dp = reinterpret_cast<const T*>(dbuf.data() + ((r - r0) * W + q) * nb);
      V* dst = ybuf.data() + ((r - r0) * W + q) * nob;
      for (int64_t ob = 0; ob < nob; ++ob)
        dst[ob] = hlk_pw_pixel<V, V, T, int64_t>(bp[ob], ap, 1, dp, 1, wa + ob, wd + ob, nob, ncg);
    }
  }

  T* yg = y + n * ys.n + gi * Og * ys.c;
  if (ys.w == 1) {  // rows contiguous (NCHW): walk each output plane row by row
    for (int64_t o = 0; o < Og; ++o) {
      const int64_t ob = o / L;
      const int l = static_cast<int>(o % L);
      for (int64_t r = r0; r < r1; ++r) {
        T* yr = yg + o * ys.c + r * ys.h;
        const V* src = ybuf.data() + (r - r0) * W * nob + ob;
        for (int64_t q = 0; q < W; ++q) yr[q] = src[q * nob].v[l];
      }
    }
  } else {  // channels_last and other layouts: outputs of a pixel together
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t q = 0; q < W; ++q) {
        T* yp = yg + r * ys.h + q * ys.w;
        const T* src = reinterpret_cast<const T*>(ybuf.data() + ((r - r0) * W + q) * nob);
        for (int64_t o = 0; o < Og; ++o) yp[o * ys.c] = src[o];
      }
  }
}

}  // namespace

template <typename T>
void hlk_forward_isa(const T* x, Strides4 xs, const T* w0, const T* b0, const T* w1, const T* b1, const T* w_pw,
                 const T* b_pw, T* y, Strides4 ys, const HlkGeometry& g) {
  using V = Lanes<T>;
  constexpr int L = V::L;
  const int64_t N = g.N, H = g.H, W = g.W, G = g.groups;
  if (N == 0 || H == 0 || W == 0 || g.Cout == 0 || G < 1) return;
  const int64_t Cg = g.C / G, Og = g.Cout / G;
  const int k1 = g.k1, k2 = g.k2, dil = g.dilation;
  const int64_t t1 = static_cast<int64_t>(k1) * k1, t2 = static_cast<int64_t>(k2) * k2;
  const int64_t P2 = hlk_pad2(g), R = hlk_pad1(g) + P2;
  const int64_t nb = (Cg + L - 1) / L, nob = (Og + L - 1) / L;

  // Depthwise weights and biases lane-packed by channel: block b of group gi holds
  // channels gi*Cg + b*L + l. Padding lanes stay zero, so their a and d are zero.
  std::vector<V> w0v(static_cast<size_t>(G * nb * t1), V(T(0))), w1v(static_cast<size_t>(G * nb * t2), V(T(0)));
  std::vector<V> b0v(static_cast<size_t>(G * nb), V(T(0))), b1v(static_cast<size_t>(G * nb), V(T(0)));
  // Pointwise weights transposed to [group][channel][output block], lanes = outputs.
  std::vector<V> wav(static_cast<size_t>(G * Cg * nob), V(T(0))), wdv(static_cast<size_t>(G * Cg * nob), V(T(0)));
  std::vector<V> bpv(static_cast<size_t>(G * nob), V(T(0)));
  for (int64_t gi = 0; gi < G; ++gi) {
    for (int64_t c = 0; c < Cg; ++c) {
      const int64_t ch = gi * Cg + c, blk = gi * nb + c / L;
      const int l = static_cast<int>(c % L);
      for (int64_t t = 0; t < t1; ++t) w0v[blk * t1 + t].v[l] = w0[ch * t1 + t];
      for (int64_t t = 0; t < t2; ++t) w1v[blk * t2 + t].v[l] = w1[ch * t2 + t];
      if (b0 != nullptr) b0v[blk].v[l] = b0[ch];
      if (b1 != nullptr) b1v[blk].v[l] = b1[ch];
    }
    for (int64_t o = 0; o < Og; ++o) {
      const int64_t ob = o / L;
      const int l = static_cast<int>(o % L);
      const T* wrow = w_pw + (gi * Og + o) * 2 * Cg;
      for (int64_t c = 0; c < Cg; ++c) {
        wav[(gi * Cg + c) * nob + ob].v[l] = wrow[c];
        wdv[(gi * Cg + c) * nob + ob].v[l] = wrow[Cg + c];
      }
      if (b_pw != nullptr) bpv[gi * nob + ob].v[l] = b_pw[gi * Og + o];
    }
  }

  // Strips tall enough that recomputing a on the 2*P2 halo rows stays a small fraction,
  // halved while there are too few tasks to keep every thread busy. The split only
  // decides who computes a pixel, never how, so results do not depend on it.
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  int64_t SR = std::min<int64_t>(H, std::max<int64_t>(16, 2 * P2));
  while (SR > 4 && N * G * ((H + SR - 1) / SR) < 4 * threads) SR = (SR + 1) / 2;
  const int64_t strips = (H + SR - 1) / SR;
  const int64_t tasks = N * G * strips;
  const bool padded_lanes = Cg % L != 0;

  const Task<T> k{x,  xs, y,  ys, H,  W,  G,      Cg,     Og,           nb,         nob,        t1,
                  t2, P2, R,  SR, strips, k1, k2, dil, padded_lanes, w0v.data(), w1v.data(), b0v.data(),
                  b1v.data(), wav.data(), wdv.data(), bpv.data()};
#pragma omp parallel
  {
    Buffers<T> bf;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) run_task(k, task, bf);
  }
}

}  // namespace ISTD_HLK_ISA
