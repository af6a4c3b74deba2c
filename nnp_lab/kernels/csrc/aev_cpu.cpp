// Fused CPU kernels for ANI-style atomic environment vectors (forward and closed-form
// backward). Compiled at first use by nnp_lab.kernels.aev_cpu (torch load_inline).
//
// Input: pair vectors sorted by centre atom with CSR row pointers (nnp_lab.kernels.layout).
// Both kernels run one OpenMP loop over centre atoms; every output row (forward) and every
// pair gradient (backward) belongs to exactly one centre, so threads never share writes.
// The angular part loops over unordered pairs (u < v) of an atom's angular neighbours using
// a small per-thread buffer of per-neighbour quantities; no per-triple array exists.
//
// Functional form (see aev_torch.py):
//   radial   1/4 exp(-eta_R (r - R_s)^2) f_c(r)
//   angular  2 ((1 + cos(theta - theta_z)) / 2)^zeta exp(-eta_A ((r1 + r2)/2 - R_k)^2)
//            f_c(r1) f_c(r2),   theta = acos(0.95 cos),   f_c = cos(pi r / R_c)/2 + 1/2
// using the exact identity cos(theta - t) = c' cos t + sqrt(1 - c'^2) sin t, c' = 0.95 cos
// (theta in [0, pi], so sin(theta) >= 0; |c'| <= 0.95 keeps the square root away from 0).

#include <torch/extension.h>
#include <pybind11/stl.h>

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr double kPi = 3.14159265358979323846;

struct Hyper {
  int64_t num_species;
  double radial_cutoff;
  double radial_eta;
  std::vector<double> radial_shifts;
  double angular_cutoff;
  double angular_eta;
  double zeta;
  std::vector<double> angular_shifts;
  std::vector<double> sections;
};

// Sections are processed in blocks of kBlock (arrays padded with ones to a multiple of it)
// so that the power below runs on fixed-size local arrays the compiler keeps in registers.
constexpr int64_t kBlock = 8;

inline int64_t padded(int64_t n) { return (n + kBlock - 1) / kBlock * kBlock; }

// out[z] = b[z]^e for z < n (n a multiple of kBlock), e = zeta or zeta - 1: integer
// exponents up to 64 by binary exponentiation (vectorisable), others by pow.
template <typename T>
struct Power {
  T zeta;
  int izeta;  // > 0 when zeta is an integer in [1, 64]
  explicit Power(double z) : zeta(static_cast<T>(z)), izeta(0) {
    if (z >= 1.0 && z <= 64.0 && std::floor(z) == z) izeta = static_cast<int>(z);
  }
  inline void apply(const T* b, T* out, int64_t n, bool minus_one) const {
    if (izeta) {
      const int e0 = minus_one ? izeta - 1 : izeta;
      for (int64_t z0 = 0; z0 < n; z0 += kBlock) {
        T x[kBlock], r[kBlock];
        for (int64_t i = 0; i < kBlock; ++i) {
          x[i] = b[z0 + i];
          r[i] = T(1);
        }
        for (int e = e0; e; e >>= 1) {
          if (e & 1)
            for (int64_t i = 0; i < kBlock; ++i) r[i] *= x[i];
          if (e > 1)
            for (int64_t i = 0; i < kBlock; ++i) x[i] *= x[i];
        }
        for (int64_t i = 0; i < kBlock; ++i) out[z0 + i] = r[i];
      }
    } else {
      const T ex = minus_one ? zeta - T(1) : zeta;
      for (int64_t z = 0; z < n; ++z) out[z] = std::pow(b[z], ex);
    }
  }
};

// exp(x), returning the 0 it would round to without calling exp for arguments far below
// the underflow threshold (libm's underflow path is slow and sets errno).
template <typename T>
inline T exp_or_zero(T x);
template <>
inline float exp_or_zero<float>(float x) {
  return x < -104.0f ? 0.0f : std::exp(x);  // expf(x < -103.973) rounds to 0
}
template <>
inline double exp_or_zero<double>(double x) {
  return x < -746.0 ? 0.0 : std::exp(x);  // exp(x < -745.134) rounds to 0
}

// Gaussians exp(-eta (x - s_k)^2) for all shifts s_k. Equally spaced shifts (ANI's are)
// use the exact recurrence e_{k+1} = e_k q_k, q_{k+1} = q_k exp(-2 eta ds^2), started
// at the nearest shift and run both ways: 3 exponentials instead of n (the radial block
// has 16). Values below 1e-30 are flushed to 0 (the recurrence would otherwise crawl
// through slow subnormal arithmetic); they are far below any feature's resolution.
template <typename T>
struct Gaussians {
  std::vector<T> shifts;
  T eta, ds = T(0), step = T(0);
  bool uniform = false;

  Gaussians(const std::vector<double>& s, double eta_) : shifts(s.begin(), s.end()),
                                                        eta(static_cast<T>(eta_)) {
    const int64_t n = s.size();
    if (n > 3) {
      const double d = (s[n - 1] - s[0]) / static_cast<double>(n - 1);
      uniform = d > 0.0;
      for (int64_t k = 1; k < n && uniform; ++k)
        uniform = std::abs(s[k] - s[k - 1] - d) <= 1e-9 * d;
      ds = static_cast<T>(d);
      step = static_cast<T>(std::exp(-2.0 * eta_ * d * d));
    }
  }

  inline void operator()(T x, T* out) const {
    const int64_t n = shifts.size();
    if (!uniform) {
      for (int64_t k = 0; k < n; ++k) {
        const T t = x - shifts[k];
        out[k] = exp_or_zero(-eta * t * t);
      }
      return;
    }
    const T tiny = T(1e-30);
    const T pos = (x - shifts[0]) / ds;
    const int64_t ks = std::min<int64_t>(n - 1, std::max<int64_t>(0, std::lround(pos)));
    const T t = x - shifts[ks];
    const T e0 = exp_or_zero(-eta * t * t);
    out[ks] = e0;
    T e = e0;
    T q = exp_or_zero(T(2) * eta * ds * t - eta * ds * ds);  // e_{k+1} / e_k
    for (int64_t k = ks + 1; k < n; ++k) {
      e = e > tiny ? e * q : T(0);
      out[k] = e;
      q *= step;
    }
    e = e0;
    q = exp_or_zero(T(-2) * eta * ds * t - eta * ds * ds);  // e_{k-1} / e_k
    for (int64_t k = ks - 1; k >= 0; --k) {
      e = e > tiny ? e * q : T(0);
      out[k] = e;
      q *= step;
    }
  }
};

// Upper-triangle index of the species pair (s1, s2), symmetric.
std::vector<int64_t> pair_table(int64_t ns) {
  std::vector<int64_t> table(ns * ns);
  int64_t idx = 0;
  for (int64_t a = 0; a < ns; ++a)
    for (int64_t b = a; b < ns; ++b) {
      table[a * ns + b] = idx;
      table[b * ns + a] = idx;
      ++idx;
    }
  return table;
}

template <typename T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

void check_inputs(const torch::Tensor& vectors, const torch::Tensor& row_ptr,
                  const torch::Tensor& neighbor_species, const torch::Tensor& angular,
                  const torch::Tensor& angular_row_ptr, const Hyper& h) {
  TORCH_CHECK(vectors.device().is_cpu(), "aev_cpu: vectors must be on the CPU");
  TORCH_CHECK(vectors.dim() == 2 && vectors.size(1) == 3, "aev_cpu: vectors must be (P, 3)");
  TORCH_CHECK(vectors.is_contiguous(), "aev_cpu: vectors must be contiguous");
  for (const auto* t : {&row_ptr, &neighbor_species, &angular, &angular_row_ptr}) {
    TORCH_CHECK(t->scalar_type() == torch::kInt64 && t->is_contiguous() && t->dim() == 1,
                "aev_cpu: index tensors must be contiguous 1-D int64");
  }
  TORCH_CHECK(row_ptr.size(0) == angular_row_ptr.size(0),
              "aev_cpu: row_ptr and angular_row_ptr lengths differ");
  TORCH_CHECK(neighbor_species.size(0) == vectors.size(0),
              "aev_cpu: one neighbour species per pair expected");
  TORCH_CHECK(h.num_species >= 1 && !h.radial_shifts.empty() && !h.angular_shifts.empty() &&
                  !h.sections.empty(),
              "aev_cpu: empty hyperparameters");
  const int64_t n_atoms = row_ptr.size(0) - 1;
  TORCH_CHECK(n_atoms >= 0, "aev_cpu: row_ptr must have N + 1 entries");
  const int64_t* rp = row_ptr.data_ptr<int64_t>();
  const int64_t* ap = angular_row_ptr.data_ptr<int64_t>();
  TORCH_CHECK(rp[0] == 0 && rp[n_atoms] == vectors.size(0),
              "aev_cpu: row_ptr must span all pairs");
  TORCH_CHECK(ap[0] == 0 && ap[n_atoms] == angular.size(0),
              "aev_cpu: angular_row_ptr must span the angular list");
  const int64_t* sp = neighbor_species.data_ptr<int64_t>();
  for (int64_t p = 0; p < neighbor_species.size(0); ++p)
    TORCH_CHECK(sp[p] >= 0 && sp[p] < h.num_species, "aev_cpu: species index out of range");
  const int64_t* ang = angular.data_ptr<int64_t>();
  for (int64_t a = 0; a < n_atoms; ++a) {
    TORCH_CHECK(rp[a] <= rp[a + 1] && ap[a] <= ap[a + 1], "aev_cpu: row pointers must ascend");
    for (int64_t q = ap[a]; q < ap[a + 1]; ++q)
      TORCH_CHECK(ang[q] >= rp[a] && ang[q] < rp[a + 1],
                  "aev_cpu: angular pair outside its centre's row");
  }
}

template <typename T>
void forward_kernel(const T* vec, const int64_t* row_ptr, const int64_t* nspec,
                    const int64_t* ang, const int64_t* ang_ptr, int64_t n_atoms,
                    const Hyper& h, int64_t max_angular, T* out) {
  const int64_t ns = h.num_species;
  const int64_t nr = h.radial_shifts.size();
  const int64_t nk = h.angular_shifts.size();
  const int64_t nz = h.sections.size();
  const int64_t nzp = padded(nz);  // base[nz:nzp] stays 1
  const int64_t radial_len = ns * nr;
  const int64_t sub = nk * nz;
  const int64_t n_feat = radial_len + ns * (ns + 1) / 2 * sub;
  const std::vector<int64_t> table = pair_table(ns);
  std::vector<T> cz(nz), sz(nz);
  for (int64_t z = 0; z < nz; ++z) {
    cz[z] = static_cast<T>(std::cos(h.sections[z]));
    sz[z] = static_cast<T>(std::sin(h.sections[z]));
  }
  const T rc_r = static_cast<T>(h.radial_cutoff);
  const T rc_a = static_cast<T>(h.angular_cutoff);
  const T w_r = static_cast<T>(kPi / h.radial_cutoff);
  const T w_a = static_cast<T>(kPi / h.angular_cutoff);
  const Power<T> power(h.zeta);
  const Gaussians<T> gauss_r(h.radial_shifts, h.radial_eta);
  const Gaussians<T> gauss_a(h.angular_shifts, h.angular_eta);

#pragma omp parallel num_threads(at::get_num_threads())
  {
    std::vector<T> gr(nr);
    // per-neighbour buffers of one atom: vector, distance, cutoff, species
    std::vector<T> bx(max_angular), by(max_angular), bz(max_angular), bd(max_angular),
        bf(max_angular);
    std::vector<int64_t> bs(max_angular);
    std::vector<T> angle_part(nzp), base(nzp, T(1)), radial_part(nk);

#pragma omp for schedule(dynamic, 16)
    for (int64_t a = 0; a < n_atoms; ++a) {
      T* o = out + a * n_feat;
      for (int64_t q = row_ptr[a]; q < row_ptr[a + 1]; ++q) {
        const T* v = vec + 3 * q;
        const T r = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        if (!(r < rc_r)) continue;
        const T fc4 = T(0.125) * std::cos(r * w_r) + T(0.125);  // f_c / 4 (exact scaling)
        T* os = o + nspec[q] * nr;
        gauss_r(r, gr.data());
        for (int64_t k = 0; k < nr; ++k) os[k] += gr[k] * fc4;
      }

      const int64_t a0 = ang_ptr[a];
      const int64_t m = ang_ptr[a + 1] - a0;
      if (m < 2) continue;
      if (static_cast<int64_t>(bd.size()) < m) {
        for (auto* b : {&bx, &by, &bz, &bd, &bf}) b->resize(m);
        bs.resize(m);
      }
      for (int64_t u = 0; u < m; ++u) {
        const int64_t q = ang[a0 + u];
        const T* v = vec + 3 * q;
        const T d = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        bx[u] = v[0];
        by[u] = v[1];
        bz[u] = v[2];
        bd[u] = d;
        bf[u] = d < rc_a ? T(0.5) * std::cos(d * w_a) + T(0.5) : T(0);
        bs[u] = nspec[q];
      }
      T* oa = o + radial_len;
      for (int64_t u = 0; u < m; ++u) {
        if (bf[u] == T(0)) continue;  // every term of u carries f_c(r_u) = 0
        for (int64_t w = u + 1; w < m; ++w) {
          const T fcc = bf[u] * bf[w];
          if (fcc == T(0)) continue;
          const T dot = bx[u] * bx[w] + by[u] * by[w] + bz[u] * bz[w];
          const T cosv = dot / std::max(bd[u] * bd[w], T(1e-10));
          const T c = T(0.95) * cosv;
          const T s = std::sqrt(std::max(T(1) - c * c, T(0)));
          for (int64_t z = 0; z < nz; ++z) base[z] = (T(1) + (c * cz[z] + s * sz[z])) * T(0.5);
          power.apply(base.data(), angle_part.data(), nzp, false);
          for (int64_t z = 0; z < nz; ++z) angle_part[z] *= T(2);
          const T mean = T(0.5) * (bd[u] + bd[w]);
          gauss_a(mean, radial_part.data());
          for (int64_t k = 0; k < nk; ++k) radial_part[k] *= fcc;
          T* op = oa + table[bs[u] * ns + bs[w]] * sub;
          for (int64_t k = 0; k < nk; ++k) {
            const T rk = radial_part[k];
            T* ok = op + k * nz;
            for (int64_t z = 0; z < nz; ++z) ok[z] += rk * angle_part[z];
          }
        }
      }
    }
  }
}

// Backward for K right-hand sides at once (K committee members, or K = 1): the geometry
// of every pair and triple (distances, cutoffs, exponentials, powers) is computed once and
// contracted with each member's grad_out[k] (K, N, F) into grad (P, K, 3): a pair's K
// gradients are adjacent, so scattering them into (N, K, 3) forces is one row operation.
template <typename T>
void backward_kernel(const T* vec, const T* grad_out, const int64_t* row_ptr,
                     const int64_t* nspec, const int64_t* ang, const int64_t* ang_ptr,
                     int64_t n_atoms, int64_t n_rhs, const Hyper& h,
                     int64_t max_angular, T* grad) {
  const int64_t ns = h.num_species;
  const int64_t nr = h.radial_shifts.size();
  const int64_t nk = h.angular_shifts.size();
  const int64_t nz = h.sections.size();
  const int64_t nzp = padded(nz);  // base[nz:nzp] stays 1
  const int64_t radial_len = ns * nr;
  const int64_t sub = nk * nz;
  const int64_t n_feat = radial_len + ns * (ns + 1) / 2 * sub;
  const int64_t gstride = n_atoms * n_feat;  // between members in grad_out
  const std::vector<int64_t> table = pair_table(ns);
  const std::vector<T> rs = cast<T>(h.radial_shifts);
  const std::vector<T> as = cast<T>(h.angular_shifts);
  std::vector<T> cz(nz), sz(nz);
  for (int64_t z = 0; z < nz; ++z) {
    cz[z] = static_cast<T>(std::cos(h.sections[z]));
    sz[z] = static_cast<T>(std::sin(h.sections[z]));
  }
  const T rc_r = static_cast<T>(h.radial_cutoff);
  const T rc_a = static_cast<T>(h.angular_cutoff);
  const T w_r = static_cast<T>(kPi / h.radial_cutoff);
  const T w_a = static_cast<T>(kPi / h.angular_cutoff);
  const T eta_r = static_cast<T>(h.radial_eta);
  const T eta_a = static_cast<T>(h.angular_eta);
  const Power<T> power(h.zeta);
  const T zeta = static_cast<T>(h.zeta);
  const Gaussians<T> gauss_r(h.radial_shifts, h.radial_eta);
  const Gaussians<T> gauss_a(h.angular_shifts, h.angular_eta);

#pragma omp parallel num_threads(at::get_num_threads())
  {
    // per-neighbour buffers: vector, distance, 1/distance, cutoff, its derivative,
    // species; per member and neighbour the accumulated gradient of the angular terms.
    std::vector<T> bx(max_angular), by(max_angular), bz(max_angular), bd(max_angular),
        bi(max_angular), bf(max_angular), bdf(max_angular);
    std::vector<T> gx(n_rhs * max_angular), gy(n_rhs * max_angular), gz(n_rhs * max_angular);
    std::vector<int64_t> bs(max_angular);
    std::vector<T> angle_part(nzp), base(nzp, T(1)), bm1(nzp), dangle(nz), radial_part(nk),
        radial_coef(nr), ga(nz);

#pragma omp for schedule(dynamic, 16)
    for (int64_t a = 0; a < n_atoms; ++a) {
      // radial: d/dr [e_k f_c / 4] = e_k (f_c' - 2 eta (r - R_k) f_c) / 4
      for (int64_t q = row_ptr[a]; q < row_ptr[a + 1]; ++q) {
        const T* v = vec + 3 * q;
        const T r = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        if (!(r < rc_r) || r == T(0)) continue;
        const T fc4 = T(0.125) * std::cos(r * w_r) + T(0.125);
        const T dfc4 = T(-0.125) * w_r * std::sin(r * w_r);
        const T inv_r = T(1) / r;
        gauss_r(r, radial_coef.data());
        for (int64_t k = 0; k < nr; ++k)
          radial_coef[k] *= (dfc4 - T(2) * eta_r * (r - rs[k]) * fc4) * inv_r;
        const int64_t off = a * n_feat + nspec[q] * nr;
        for (int64_t m = 0; m < n_rhs; ++m) {
          const T* gs = grad_out + m * gstride + off;
          T scale = T(0);
          for (int64_t k = 0; k < nr; ++k) scale += gs[k] * radial_coef[k];
          T* gq = grad + 3 * (q * n_rhs + m);
          gq[0] = scale * v[0];
          gq[1] = scale * v[1];
          gq[2] = scale * v[2];
        }
      }

      const int64_t a0 = ang_ptr[a];
      const int64_t mm = ang_ptr[a + 1] - a0;
      if (mm < 2) continue;
      if (static_cast<int64_t>(bd.size()) < mm) {
        for (auto* b : {&bx, &by, &bz, &bd, &bi, &bf, &bdf}) b->resize(mm);
        for (auto* b : {&gx, &gy, &gz}) b->resize(n_rhs * mm);
        bs.resize(mm);
      }
      for (int64_t u = 0; u < mm; ++u) {
        const int64_t q = ang[a0 + u];
        const T* v = vec + 3 * q;
        const T d = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        bx[u] = v[0];
        by[u] = v[1];
        bz[u] = v[2];
        bd[u] = d;
        bi[u] = d > T(0) ? T(1) / d : T(0);  // torch: d|v|/dv = 0 at v = 0
        const bool in = d < rc_a;
        bf[u] = in ? T(0.5) * std::cos(d * w_a) + T(0.5) : T(0);
        bdf[u] = in ? T(-0.5) * w_a * std::sin(d * w_a) : T(0);
        bs[u] = nspec[q];
      }
      std::fill(gx.begin(), gx.begin() + n_rhs * mm, T(0));
      std::fill(gy.begin(), gy.begin() + n_rhs * mm, T(0));
      std::fill(gz.begin(), gz.begin() + n_rhs * mm, T(0));
      const int64_t ga_off = a * n_feat + radial_len;
      for (int64_t u = 0; u < mm; ++u) {
        // a term and its gradient vanish when f_c and f_c' of one of its pairs do
        // (r >= R_c)
        if (bf[u] == T(0) && bdf[u] == T(0)) continue;
        for (int64_t w = u + 1; w < mm; ++w) {
          if (bf[w] == T(0) && bdf[w] == T(0)) continue;
          const int64_t poff = ga_off + table[bs[u] * ns + bs[w]] * sub;
          const T prod = bd[u] * bd[w];
          const bool clamped = prod < T(1e-10);
          const T inv = T(1) / (clamped ? T(1e-10) : prod);
          const T dot = bx[u] * bx[w] + by[u] * by[w] + bz[u] * bz[w];
          const T cosv = dot * inv;
          const T c = T(0.95) * cosv;
          const T s = std::sqrt(std::max(T(1) - c * c, T(0)));
          const T c_over_s = s > T(0) ? c / s : T(0);
          for (int64_t z = 0; z < nz; ++z) base[z] = (T(1) + (c * cz[z] + s * sz[z])) * T(0.5);
          power.apply(base.data(), bm1.data(), nzp, true);  // b^(zeta-1)
          for (int64_t z = 0; z < nz; ++z) {
            angle_part[z] = T(2) * bm1[z] * base[z];
            // d/dc' of 2 b^zeta with db/dc' = (cos t - c'/s sin t) / 2
            dangle[z] = zeta * bm1[z] * (cz[z] - c_over_s * sz[z]);
          }
          const T mean = T(0.5) * (bd[u] + bd[w]);
          gauss_a(mean, radial_part.data());
          const T fcc = bf[u] * bf[w];
          const T dfu = bdf[u] * bf[w];
          const T dfw = bf[u] * bdf[w];
          // dcos/dv_u = v_w / (r_u r_w) - cos v_u / r_u^2 (second term absent if clamped)
          const T cu = clamped ? T(0) : cosv * bi[u] * bi[u];
          const T cw = clamped ? T(0) : cosv * bi[w] * bi[w];
          for (int64_t m = 0; m < n_rhs; ++m) {
            const T* gp = grad_out + m * gstride + poff;
            // GR_k = sum_z G[k,z] A_z,  GA_z = sum_k G[k,z] R_k
            for (int64_t z = 0; z < nz; ++z) ga[z] = T(0);
            T de_dmean_part = T(0), de_dfcc = T(0);
            for (int64_t k = 0; k < nk; ++k) {
              const T* gk = gp + k * nz;
              const T rk = radial_part[k];
              T grk = T(0);
              for (int64_t z = 0; z < nz; ++z) {
                grk += gk[z] * angle_part[z];
                ga[z] += gk[z] * rk;
              }
              de_dfcc += grk * rk;
              de_dmean_part += grk * rk * (mean - as[k]);
            }
            T de_dc = T(0);
            for (int64_t z = 0; z < nz; ++z) de_dc += ga[z] * dangle[z];
            de_dc *= fcc * T(0.95);                                   // dE/dcos
            const T de_dmean = T(-2) * eta_a * fcc * de_dmean_part;  // dE/dmean
            // dE/dr_u (radial-distance part) and dE/dr_w
            const T de_du = T(0.5) * de_dmean + de_dfcc * dfu;
            const T de_dw = T(0.5) * de_dmean + de_dfcc * dfw;
            const T su = de_du * bi[u] - de_dc * cu;
            const T sw = de_dw * bi[w] - de_dc * cw;
            const T cross = de_dc * inv;
            T* gxm = gx.data() + m * mm;
            T* gym = gy.data() + m * mm;
            T* gzm = gz.data() + m * mm;
            gxm[u] += cross * bx[w] + su * bx[u];
            gym[u] += cross * by[w] + su * by[u];
            gzm[u] += cross * bz[w] + su * bz[u];
            gxm[w] += cross * bx[u] + sw * bx[w];
            gym[w] += cross * by[u] + sw * by[w];
            gzm[w] += cross * bz[u] + sw * bz[w];
          }
        }
      }
      for (int64_t m = 0; m < n_rhs; ++m)
        for (int64_t u = 0; u < mm; ++u) {
          T* gq = grad + 3 * (ang[a0 + u] * n_rhs + m);
          gq[0] += gx[m * mm + u];
          gq[1] += gy[m * mm + u];
          gq[2] += gz[m * mm + u];
        }
    }
  }
}

// Full neighbor list grouped by centre from a half list (each pair once): both directions
// of every pair, placed by a counting sort (O(P), deterministic: pairs of a centre keep
// the half list's order, i->j entries and j->i entries interleaved as they come).
void full_from_half_kernel(const int64_t* hi, const int64_t* hj, const int32_t* hs,
                           int64_t n_half, int64_t n_atoms, int64_t* row_ptr, int64_t* fi,
                           int64_t* fj, int32_t* fs) {
  std::vector<int64_t> cursor(n_atoms + 1, 0);
  for (int64_t p = 0; p < n_half; ++p) {
    ++cursor[hi[p] + 1];
    ++cursor[hj[p] + 1];
  }
  for (int64_t a = 0; a < n_atoms; ++a) cursor[a + 1] += cursor[a];
  std::copy(cursor.begin(), cursor.end(), row_ptr);
  for (int64_t p = 0; p < n_half; ++p) {
    const int64_t i = hi[p], j = hj[p];
    const int64_t x = cursor[i]++;
    fi[x] = i;
    fj[x] = j;
    fs[3 * x] = hs[3 * p];
    fs[3 * x + 1] = hs[3 * p + 1];
    fs[3 * x + 2] = hs[3 * p + 2];
    const int64_t y = cursor[j]++;
    fi[y] = j;
    fj[y] = i;
    fs[3 * y] = -hs[3 * p];
    fs[3 * y + 1] = -hs[3 * p + 1];
    fs[3 * y + 2] = -hs[3 * p + 2];
  }
}

int64_t max_row(const torch::Tensor& ptr) {
  const int64_t* p = ptr.data_ptr<int64_t>();
  int64_t best = 0;
  for (int64_t a = 0; a + 1 < ptr.size(0); ++a) best = std::max(best, p[a + 1] - p[a]);
  return best;
}

Hyper make_hyper(int64_t num_species, double radial_cutoff, double radial_eta,
                 std::vector<double> radial_shifts, double angular_cutoff, double angular_eta,
                 double zeta, std::vector<double> angular_shifts, std::vector<double> sections) {
  return Hyper{num_species,   radial_cutoff, radial_eta,
               std::move(radial_shifts), angular_cutoff, angular_eta,
               zeta,          std::move(angular_shifts), std::move(sections)};
}

}  // namespace

torch::Tensor aev_forward(torch::Tensor vectors, torch::Tensor row_ptr,
                          torch::Tensor neighbor_species, torch::Tensor angular,
                          torch::Tensor angular_row_ptr, int64_t num_species,
                          double radial_cutoff, double radial_eta,
                          std::vector<double> radial_shifts, double angular_cutoff,
                          double angular_eta, double zeta, std::vector<double> angular_shifts,
                          std::vector<double> sections) {
  const Hyper h = make_hyper(num_species, radial_cutoff, radial_eta, std::move(radial_shifts),
                             angular_cutoff, angular_eta, zeta, std::move(angular_shifts),
                             std::move(sections));
  check_inputs(vectors, row_ptr, neighbor_species, angular, angular_row_ptr, h);
  const int64_t n_atoms = row_ptr.size(0) - 1;
  const int64_t ns = h.num_species;
  const int64_t n_feat = ns * static_cast<int64_t>(h.radial_shifts.size()) +
                         ns * (ns + 1) / 2 * static_cast<int64_t>(h.angular_shifts.size()) *
                             static_cast<int64_t>(h.sections.size());
  auto out = torch::zeros({n_atoms, n_feat}, vectors.options());
  const int64_t max_angular = max_row(angular_row_ptr);
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "aev_cpu_forward", [&] {
    forward_kernel<scalar_t>(vectors.data_ptr<scalar_t>(), row_ptr.data_ptr<int64_t>(),
                             neighbor_species.data_ptr<int64_t>(), angular.data_ptr<int64_t>(),
                             angular_row_ptr.data_ptr<int64_t>(), n_atoms, h, max_angular,
                             out.data_ptr<scalar_t>());
  });
  return out;
}

torch::Tensor aev_backward(torch::Tensor grad_out, torch::Tensor vectors, torch::Tensor row_ptr,
                           torch::Tensor neighbor_species, torch::Tensor angular,
                           torch::Tensor angular_row_ptr, int64_t num_species,
                           double radial_cutoff, double radial_eta,
                           std::vector<double> radial_shifts, double angular_cutoff,
                           double angular_eta, double zeta, std::vector<double> angular_shifts,
                           std::vector<double> sections) {
  const Hyper h = make_hyper(num_species, radial_cutoff, radial_eta, std::move(radial_shifts),
                             angular_cutoff, angular_eta, zeta, std::move(angular_shifts),
                             std::move(sections));
  check_inputs(vectors, row_ptr, neighbor_species, angular, angular_row_ptr, h);
  const int64_t n_atoms = row_ptr.size(0) - 1;
  const int64_t ns = h.num_species;
  const int64_t n_feat = ns * static_cast<int64_t>(h.radial_shifts.size()) +
                         ns * (ns + 1) / 2 * static_cast<int64_t>(h.angular_shifts.size()) *
                             static_cast<int64_t>(h.sections.size());
  const bool batched = grad_out.dim() == 3;
  TORCH_CHECK(grad_out.is_contiguous() && (grad_out.dim() == 2 || batched) &&
                  grad_out.size(-2) == n_atoms && grad_out.size(-1) == n_feat,
              "aev_cpu: grad_out must be a contiguous (N, F) or (K, N, F) tensor");
  TORCH_CHECK(grad_out.scalar_type() == vectors.scalar_type(),
              "aev_cpu: grad_out and vectors dtypes differ");
  const int64_t n_rhs = batched ? grad_out.size(0) : 1;
  auto grad = batched ? torch::zeros({vectors.size(0), n_rhs, 3}, vectors.options())
                      : torch::zeros_like(vectors);
  const int64_t max_angular = max_row(angular_row_ptr);
  if (n_rhs == 0) return grad;
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "aev_cpu_backward", [&] {
    backward_kernel<scalar_t>(vectors.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(),
                              row_ptr.data_ptr<int64_t>(), neighbor_species.data_ptr<int64_t>(),
                              angular.data_ptr<int64_t>(), angular_row_ptr.data_ptr<int64_t>(),
                              n_atoms, n_rhs, h, max_angular,
                              grad.data_ptr<scalar_t>());
  });
  return grad;
}

std::vector<torch::Tensor> full_from_half(torch::Tensor i, torch::Tensor j, torch::Tensor shifts,
                                          int64_t n_atoms) {
  TORCH_CHECK(i.scalar_type() == torch::kInt64 && j.scalar_type() == torch::kInt64 &&
                  i.is_contiguous() && j.is_contiguous() && i.dim() == 1 &&
                  j.sizes() == i.sizes(),
              "full_from_half: i and j must be contiguous 1-D int64 of equal length");
  TORCH_CHECK(shifts.scalar_type() == torch::kInt32 && shifts.is_contiguous() &&
                  shifts.dim() == 2 && shifts.size(0) == i.size(0) && shifts.size(1) == 3,
              "full_from_half: shifts must be a contiguous (P, 3) int32 tensor");
  const int64_t n = i.size(0);
  const int64_t* pi = i.data_ptr<int64_t>();
  const int64_t* pj = j.data_ptr<int64_t>();
  for (int64_t p = 0; p < n; ++p)
    TORCH_CHECK(pi[p] >= 0 && pi[p] < n_atoms && pj[p] >= 0 && pj[p] < n_atoms,
                "full_from_half: atom index out of range");
  auto opts = i.options();
  auto row_ptr = torch::empty({n_atoms + 1}, opts);
  auto fi = torch::empty({2 * n}, opts);
  auto fj = torch::empty({2 * n}, opts);
  auto fs = torch::empty({2 * n, 3}, shifts.options());
  full_from_half_kernel(pi, pj, shifts.data_ptr<int32_t>(), n, n_atoms,
                        row_ptr.data_ptr<int64_t>(), fi.data_ptr<int64_t>(),
                        fj.data_ptr<int64_t>(), fs.data_ptr<int32_t>());
  return {fi, fj, fs, row_ptr};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &aev_forward, "AEV forward (N, F)",
        py::call_guard<py::gil_scoped_release>());
  m.def("backward", &aev_backward,
        "AEV backward: grad wrt pair vectors, (P, 3) for grad_out (N, F), (P, K, 3) for (K, N, F)",
        py::call_guard<py::gil_scoped_release>());
  m.def("full_from_half", &full_from_half,
        "full neighbor list grouped by centre from a half list: (i, j, shifts, row_ptr)",
        py::call_guard<py::gil_scoped_release>());
}
