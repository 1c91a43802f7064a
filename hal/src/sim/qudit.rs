//! The `singlequdit` physics model: a collective spin of length j = N/2 for N loaded atoms.
//!
//! # Basis and operations
//!
//! The state is a complex vector ψ over the basis index k = 0..=N, where index k is the
//! eigenstate of Lz with m = j − k (k = 0 is m = +N/2, the start state; k is the number of
//! atoms a `measure` reports). The operations are
//!
//! * `rlx(θ)` = exp(−iθ·Lx), with Lx = (L₊ + L₋)/2 real, symmetric and tridiagonal:
//!   ⟨k−1|Lx|k⟩ = ⟨k|Lx|k−1⟩ = √(k·(N + 1 − k)) / 2 (this is √(j(j+1) − m(m+1))/2 with m = j − k,
//!   written in integers so that it is exact before the square root);
//! * `rlz(θ)` = exp(−iθ·Lz) and `rlz2(θ)` = exp(−iθ·Lz²), both diagonal and applied as exact phases.
//!
//! # How `rlx` is computed (Chebyshev propagation)
//!
//! The spectrum of Lx is exactly {−j, …, +j}, so X = Lx / j has its spectrum in [−1, 1] and
//! exp(−iθ·Lx) = exp(−i·a·X) with a = θ·j. The Jacobi–Anger expansion gives, uniformly on [−1, 1],
//!
//! exp(−i·a·x) = J₀(a) + 2 Σ_{k≥1} (−i)^k J_k(a) T_k(x),
//!
//! where J_k are Bessel functions of the first kind and T_k Chebyshev polynomials. The vectors
//! T_k(X)ψ follow the three-term recurrence t_{k+1} = 2X·t_k − t_{k−1}, one tridiagonal product per
//! term, and ‖T_k(X)ψ‖ ≤ ‖ψ‖, so the series is numerically stable. J_k(a) decays faster than
//! exponentially once k > a; the series is cut at the first k > a where |J_k(a)| < 10⁻¹⁸.
//!
//! The coefficients J_k(a) for all k are computed with Miller's backward recurrence
//! J_{k−1} = (2k/a)·J_k − J_{k+1}, started well beyond the decaying edge (at
//! k ≈ a + 14·a^{1/3} + 20) and normalised with J₀ + 2 Σ J_{2k} = 1. To keep that table in a
//! fixed buffer allocated by [`SpinState::new`], a rotation with a > 256 is split into 2^p equal
//! sub-steps with a/2^p ≤ 256 (halving is exact in floating point, so the sub-angles add up to
//! exactly θ); all sub-steps share one coefficient table. The cost is about (a + 15·a^{1/3} + 20)
//! tridiagonal products per rotation, i.e. O(N²·θ) in total, and `apply` never allocates.
//!
//! Angles larger than 100π in magnitude (far outside any instruction schema) are first reduced
//! modulo the exact period of the operation (4π for `rlx` and `rlz`, 8π for `rlz2`, using the
//! `f64` value of π), so that the work stays bounded; inside ±100π the angle is used as given.
//!
//! Diagonal phases θ·m and θ·m² are formed with an error-free product (`mul_add` recovers the
//! rounding error of θ·(2m) or θ·(2m)², which is then applied to the sine and cosine to first
//! order), so large `rlz2` angles on hundreds of atoms keep full phase accuracy.
//!
//! # Sampling
//!
//! [`OutcomeSampler`] turns P(k) into a cumulative table once per experiment, and
//! [`shot_uniform`] gives the reproducible uniform number of each shot.

use std::f64::consts::PI;
use std::fmt;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Largest Chebyshev argument a = |θ|·j handled in one sub-step.
const A_MAX: f64 = 256.0;
/// Length of the Bessel coefficient table (covers the Miller start for `A_MAX`, plus two).
const BESSEL_LEN: usize = 400;
/// A Chebyshev term whose Bessel coefficient is below this is dropped (with all later ones).
const TERM_TOL: f64 = 1e-18;
/// Below this value of a = |θ|·j an `rlx` rotation is the identity to far below `f64` precision.
const IDENTITY_A: f64 = 1e-30;
/// Angles beyond this magnitude are reduced modulo the operation's period.
const REDUCE_ABOVE: f64 = 100.0 * PI;

/// One operation of the collective spin, with its angle in radians.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpinOp {
    /// `rlx(θ)`: exp(−iθ·Lx).
    Rx(f64),
    /// `rlz(θ)`: exp(−iθ·Lz).
    Rz(f64),
    /// `rlz2(θ)`: exp(−iθ·Lz²).
    Rz2(f64),
}

impl SpinOp {
    /// The rotation angle in radians.
    pub fn angle(&self) -> f64 {
        match *self {
            SpinOp::Rx(t) | SpinOp::Rz(t) | SpinOp::Rz2(t) => t,
        }
    }

    /// The job-format instruction name of this operation (`rlx`, `rlz` or `rlz2`).
    pub fn instruction_name(&self) -> &'static str {
        match self {
            SpinOp::Rx(_) => "rlx",
            SpinOp::Rz(_) => "rlz",
            SpinOp::Rz2(_) => "rlz2",
        }
    }
}

impl fmt::Display for SpinOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.instruction_name(), self.angle())
    }
}

/// Everything that can be wrong when driving the qudit model.
#[derive(Debug, Clone, PartialEq)]
pub enum QuditError {
    /// `reset` was asked for an atom number outside 1..=n_max.
    AtomCountOutOfRange {
        /// The requested number of atoms.
        n_atoms: u32,
        /// The capacity the state was created with.
        n_max: u32,
    },
    /// An operation angle was NaN or infinite.
    NonFiniteAngle {
        /// The rejected operation.
        op: SpinOp,
        /// Its position in the operation list, when it came from one.
        position: Option<usize>,
    },
    /// The output slice of `probabilities_into` is shorter than N + 1.
    OutputTooShort {
        /// Length of the slice given.
        len: usize,
        /// Length needed (N + 1).
        needed: usize,
    },
    /// `OutcomeSampler::from_probabilities` was given no outcomes.
    NoOutcomes,
    /// A probability was NaN, infinite or negative.
    InvalidProbability {
        /// Index of the offending entry.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// All probabilities were zero (nothing to renormalise).
    ZeroTotalProbability,
}

impl fmt::Display for QuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuditError::AtomCountOutOfRange { n_atoms, n_max } => write!(
                f,
                "atom number {n_atoms} is out of range: must be in 1..={n_max}"
            ),
            QuditError::NonFiniteAngle { op, position } => {
                write!(
                    f,
                    "{} angle is {}: angles must be finite radians",
                    op.instruction_name(),
                    op.angle()
                )?;
                if let Some(i) = position {
                    write!(f, " (operation #{i})")?;
                }
                Ok(())
            }
            QuditError::OutputTooShort { len, needed } => write!(
                f,
                "probability output has length {len}, needs at least {needed} (N + 1)"
            ),
            QuditError::NoOutcomes => {
                write!(f, "probability list is empty: need at least one outcome")
            }
            QuditError::InvalidProbability { index, value } => write!(
                f,
                "probability[{index}] = {value}: probabilities must be finite and >= 0"
            ),
            QuditError::ZeroTotalProbability => write!(
                f,
                "probabilities sum to 0: at least one outcome must have a positive probability"
            ),
        }
    }
}

impl std::error::Error for QuditError {}

/// State vector of a collective spin with preallocated buffers (no allocation after `new`).
#[derive(Debug, Clone)]
pub struct SpinState {
    n_max: u32,
    n_atoms: u32,
    /// Real and imaginary parts of ψ_k.
    re: Vec<f64>,
    im: Vec<f64>,
    /// Chebyshev accumulator and the second recurrence vector.
    acc_re: Vec<f64>,
    acc_im: Vec<f64>,
    t_re: Vec<f64>,
    t_im: Vec<f64>,
    /// `offdiag[k]` = ⟨k−1|X|k⟩ for k in 1..=N; zero at 0 and N + 1.
    offdiag: Vec<f64>,
    /// Bessel coefficients J_k(a) of the current rotation.
    bessel: Vec<f64>,
}

impl SpinState {
    /// Allocates buffers for up to `n_max` atoms (`0` is treated as `1`) and starts in the
    /// one-atom start state m = +1/2. Memory: 7·(n_max + 2) + 400 `f64` values; nothing is
    /// allocated afterwards.
    pub fn new(n_max: u32) -> SpinState {
        let n_max = n_max.max(1);
        let len = n_max as usize + 2;
        let mut state = SpinState {
            n_max,
            n_atoms: 1,
            re: vec![0.0; len],
            im: vec![0.0; len],
            acc_re: vec![0.0; len],
            acc_im: vec![0.0; len],
            t_re: vec![0.0; len],
            t_im: vec![0.0; len],
            offdiag: vec![0.0; len],
            bessel: vec![0.0; BESSEL_LEN],
        };
        state.prepare(1);
        state
    }

    /// Puts `n_atoms` atoms in the start state m = +N/2 (index 0).
    ///
    /// Errors with [`QuditError::AtomCountOutOfRange`] if `n_atoms` is 0 or above `n_max`.
    pub fn reset(&mut self, n_atoms: u32) -> Result<(), QuditError> {
        if n_atoms == 0 || n_atoms > self.n_max {
            return Err(QuditError::AtomCountOutOfRange {
                n_atoms,
                n_max: self.n_max,
            });
        }
        self.prepare(n_atoms);
        Ok(())
    }

    fn prepare(&mut self, n_atoms: u32) {
        self.n_atoms = n_atoms;
        let n = n_atoms as usize;
        self.re.fill(0.0);
        self.im.fill(0.0);
        self.re[0] = 1.0;
        let nf = n as f64;
        self.offdiag.fill(0.0);
        for k in 1..=n {
            let kf = k as f64;
            self.offdiag[k] = (kf * (nf + 1.0 - kf)).sqrt() / nf;
        }
    }

    /// Applies one operation. Errors with [`QuditError::NonFiniteAngle`] if the angle is NaN or
    /// infinite (the state is then unchanged). Never allocates.
    pub fn apply(&mut self, op: SpinOp) -> Result<(), QuditError> {
        let theta = op.angle();
        if !theta.is_finite() {
            return Err(QuditError::NonFiniteAngle { op, position: None });
        }
        match op {
            SpinOp::Rx(_) => self.rotate_x(reduce_angle(theta, 4.0 * PI)),
            SpinOp::Rz(_) => self.apply_phases(reduce_angle(theta, 4.0 * PI), false),
            SpinOp::Rz2(_) => self.apply_phases(reduce_angle(theta, 8.0 * PI), true),
        }
        Ok(())
    }

    /// Number of atoms N of the current state.
    pub fn n_atoms(&self) -> u32 {
        self.n_atoms
    }

    /// Writes P(k) = |ψ_k|² for k = 0..=N into `out[..=N]` (the rest of `out` is untouched).
    ///
    /// Errors with [`QuditError::OutputTooShort`] if `out.len() < N + 1`.
    pub fn probabilities_into(&self, out: &mut [f64]) -> Result<(), QuditError> {
        let needed = self.n_atoms as usize + 1;
        if out.len() < needed {
            return Err(QuditError::OutputTooShort {
                len: out.len(),
                needed,
            });
        }
        for (k, p) in out[..needed].iter_mut().enumerate() {
            *p = self.re[k] * self.re[k] + self.im[k] * self.im[k];
        }
        Ok(())
    }

    /// Σ_k |ψ_k|² (1 for a valid state, up to rounding).
    pub fn norm(&self) -> f64 {
        let n = self.n_atoms as usize;
        self.re[..=n]
            .iter()
            .zip(&self.im[..=n])
            .map(|(r, i)| r * r + i * i)
            .sum()
    }

    /// Multiplies ψ_k by exp(−iθ·m) (or exp(−iθ·m²) when `quadratic`), with m = (N − 2k)/2.
    fn apply_phases(&mut self, theta: f64, quadratic: bool) {
        let n = self.n_atoms as usize;
        for k in 0..=n {
            let two_m = (n as i64) - 2 * (k as i64);
            // The phase is θ·coef·scale with coef an integer that is exact in f64 for N < 2^26.
            let (coef, scale) = if quadratic {
                let q = two_m.unsigned_abs();
                ((q * q) as f64, 0.25)
            } else {
                (two_m as f64, 0.5)
            };
            let product = theta * coef;
            let rounding = theta.mul_add(coef, -product);
            let phase = -(product * scale);
            let phase_err = -(rounding * scale);
            let (s0, c0) = phase.sin_cos();
            let (s, c) = (s0 + phase_err * c0, c0 - phase_err * s0);
            let (r, i) = (self.re[k], self.im[k]);
            self.re[k] = c * r - s * i;
            self.im[k] = c * i + s * r;
        }
    }

    /// ψ ← exp(−iθ·Lx) ψ by Chebyshev propagation (see the module documentation).
    fn rotate_x(&mut self, theta: f64) {
        let j = 0.5 * f64::from(self.n_atoms);
        let mut a = theta.abs() * j;
        if a < IDENTITY_A {
            return;
        }
        let mut steps: u64 = 1;
        while a > A_MAX {
            a *= 0.5;
            steps *= 2;
        }
        let terms = bessel_table(a, &mut self.bessel);
        let sign = if theta < 0.0 { -1.0 } else { 1.0 };
        for _ in 0..steps {
            self.chebyshev_step(terms, sign);
        }
    }

    /// One sub-step ψ ← Σ_k c_k T_k(X) ψ using the Bessel table for the first `terms` terms.
    fn chebyshev_step(&mut self, terms: usize, sign: f64) {
        let n = self.n_atoms as usize;
        let x = &self.offdiag[..n + 2];
        let coef = &self.bessel[..terms];
        // (a_re, a_im) holds t_{k-1} (and receives t_{k+1}); (b_re, b_im) holds t_k.
        let mut a_re = &mut self.re[..=n];
        let mut a_im = &mut self.im[..=n];
        let mut b_re = &mut self.t_re[..=n];
        let mut b_im = &mut self.t_im[..=n];
        let acc_re = &mut self.acc_re[..=n];
        let acc_im = &mut self.acc_im[..=n];

        let c0 = coef[0];
        for i in 0..=n {
            acc_re[i] = c0 * a_re[i];
            acc_im[i] = c0 * a_im[i];
        }
        if terms > 1 {
            tridiag_step(x, a_re, b_re, false);
            tridiag_step(x, a_im, b_im, false);
            accumulate(acc_re, acc_im, b_re, b_im, 1, 2.0 * coef[1], sign);
            for (k, &c) in coef.iter().enumerate().skip(2) {
                tridiag_step(x, b_re, a_re, true);
                tridiag_step(x, b_im, a_im, true);
                accumulate(acc_re, acc_im, a_re, a_im, k, 2.0 * c, sign);
                std::mem::swap(&mut a_re, &mut b_re);
                std::mem::swap(&mut a_im, &mut b_im);
            }
        }
        std::mem::swap(&mut self.re, &mut self.acc_re);
        std::mem::swap(&mut self.im, &mut self.acc_im);
    }
}

/// `out ← X·v` (when `!recur`) or `out ← 2X·v − out` (when `recur`), X tridiagonal with zero
/// diagonal and off-diagonal `x[1..=n]` (`x[0]` and `x[n+1]` are zero).
fn tridiag_step(x: &[f64], v: &[f64], out: &mut [f64], recur: bool) {
    let n = v.len() - 1;
    let (scale, keep) = if recur { (2.0, 1.0) } else { (1.0, 0.0) };
    for i in 0..=n {
        let left = if i > 0 { x[i] * v[i - 1] } else { 0.0 };
        let right = if i < n { x[i + 1] * v[i + 1] } else { 0.0 };
        let prev = if recur { out[i] } else { 0.0 };
        out[i] = scale * (left + right) - keep * prev;
    }
}

/// `acc += (−i·sign)^k · weight · t`.
fn accumulate(
    acc_re: &mut [f64],
    acc_im: &mut [f64],
    t_re: &[f64],
    t_im: &[f64],
    k: usize,
    weight: f64,
    sign: f64,
) {
    // (−i·s)^k = 1, −i·s, −1, +i·s for k mod 4 = 0, 1, 2, 3.
    let (cr, ci) = match k % 4 {
        0 => (weight, 0.0),
        1 => (0.0, -sign * weight),
        2 => (-weight, 0.0),
        _ => (0.0, sign * weight),
    };
    for i in 0..acc_re.len() {
        acc_re[i] += cr * t_re[i] - ci * t_im[i];
        acc_im[i] += cr * t_im[i] + ci * t_re[i];
    }
}

/// Index where Miller's backward recurrence starts for argument `a`.
fn miller_start(a: f64) -> usize {
    (a + 14.0 * a.cbrt() + 20.0).ceil() as usize
}

/// Fills `out` with J_k(a) (0 < a ≤ `A_MAX`) and returns how many leading terms to keep.
fn bessel_table(a: f64, out: &mut [f64]) -> usize {
    let start = miller_start(a).min(out.len() - 2);
    out.fill(0.0);
    out[start] = 1.0;
    for k in (1..=start).rev() {
        let v = (2.0 * k as f64 / a) * out[k] - out[k + 1];
        out[k - 1] = v;
        if v.abs() > 1e100 {
            let s = 1.0 / v.abs();
            for y in &mut out[k - 1..=start] {
                *y *= s;
            }
        }
    }
    let mut sum = out[0];
    for k in (2..=start).step_by(2) {
        sum += 2.0 * out[k];
    }
    for y in &mut out[..=start] {
        *y /= sum;
    }
    let first_decaying = a.floor() as usize + 1;
    (first_decaying..=start)
        .find(|&k| out[k].abs() < TERM_TOL)
        .unwrap_or(start + 1)
}

/// Reduces |θ| > 100π modulo `period` into [−period/2, period/2]; smaller angles are unchanged.
fn reduce_angle(theta: f64, period: f64) -> f64 {
    if theta.abs() <= REDUCE_ABOVE {
        return theta;
    }
    let mut r = theta % period;
    if r > 0.5 * period {
        r -= period;
    } else if r < -0.5 * period {
        r += period;
    }
    r
}

/// Cumulative distribution for sampling, built once per experiment (may allocate).
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeSampler {
    /// cdf[k] = P(outcome ≤ k), non-decreasing, exactly 1 from the last possible outcome on.
    cdf: Vec<f64>,
    /// Index of the last outcome with a positive probability.
    last_possible: usize,
}

impl OutcomeSampler {
    /// Builds the sampler from (possibly unnormalised) probabilities, renormalising them.
    ///
    /// Errors if `p` is empty, has a NaN, infinite or negative entry, or sums to zero.
    pub fn from_probabilities(p: &[f64]) -> Result<OutcomeSampler, QuditError> {
        if p.is_empty() {
            return Err(QuditError::NoOutcomes);
        }
        if let Some((index, &value)) = p
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite() || **v < 0.0)
        {
            return Err(QuditError::InvalidProbability { index, value });
        }
        let last_possible = match p.iter().rposition(|&v| v > 0.0) {
            Some(i) => i,
            None => return Err(QuditError::ZeroTotalProbability),
        };
        let total: f64 = p.iter().sum();
        if !total.is_finite() {
            // Only reachable when the entries are huge: renormalise by the largest first.
            let max = p.iter().fold(0.0_f64, |m, &v| m.max(v));
            let scaled: Vec<f64> = p.iter().map(|v| v / max).collect();
            return OutcomeSampler::from_probabilities(&scaled);
        }
        let mut cdf = Vec::with_capacity(p.len());
        let mut running = 0.0;
        for &v in p {
            running += v;
            cdf.push((running / total).min(1.0));
        }
        for c in &mut cdf[last_possible..] {
            *c = 1.0;
        }
        Ok(OutcomeSampler { cdf, last_possible })
    }

    /// The outcome for a uniform number `u` in [0, 1): the smallest k with u < cdf[k], found by
    /// binary search. Never panics: u < 0 or NaN acts as 0, u ≥ 1 gives the last outcome with a
    /// positive probability; an outcome of probability zero is never returned.
    pub fn sample(&self, u: f64) -> u32 {
        let u = if u >= 0.0 { u } else { 0.0 };
        let k = self.cdf.partition_point(|&c| c <= u);
        k.min(self.last_possible) as u32
    }

    /// Number of outcomes (N + 1 for N atoms).
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Always false: a sampler has at least one outcome.
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }
}

/// splitmix64 output function (finaliser) applied to one state value.
fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic per-shot uniform number keyed by (seed, experiment index, shot index): same
/// inputs, same value, on every platform; different shots/experiments are independent streams.
/// No allocation.
///
/// Exact derivation (part of the reproducibility contract; changing it changes every seeded
/// result):
///
/// 1. Key: four 64-bit words w₁..w₄ from a splitmix64 generator with state `seed`:
///    `s += 0x9E3779B97F4A7C15; w = mix(s)` where
///    `mix(z) = { z = (z ^ z>>30)·0xBF58476D1CE4E5B9; z = (z ^ z>>27)·0x94D049BB133111EB; z ^ z>>31 }`
///    (wrapping arithmetic). The 32-byte ChaCha key is w₁‖w₂‖w₃‖w₄, each little-endian.
/// 2. Generator: ChaCha with 8 rounds (`rand_chacha` 0.3 `ChaCha8Rng::from_seed(key)`), stream
///    (64-bit nonce) = `experiment`, 64-bit block counter and word position set so that the output
///    starts at 32-bit word `2·shot` of that stream (`set_word_pos(2·shot)`).
/// 3. Value: `x = next_u64()` (word 2·shot in the low half, word 2·shot + 1 in the high half),
///    result `(x >> 11) · 2⁻⁵³`, which lies in [0, 1).
///
/// Each (experiment, shot) therefore reads its own 64 bits of the key's ChaCha8 keystream.
pub fn shot_uniform(seed: u64, experiment: u32, shot: u64) -> f64 {
    let mut key = [0u8; 32];
    let mut state = seed;
    for chunk in key.chunks_exact_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        chunk.copy_from_slice(&splitmix64_mix(state).to_le_bytes());
    }
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(u64::from(experiment));
    rng.set_word_pos(u128::from(shot) * 2);
    let bits = rng.next_u64();
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Convenience for tests and the control plane: final probabilities P(k), k = 0..=N, of `ops`
/// applied to `n_atoms` atoms from the start state.
///
/// Errors if `n_atoms` is 0 or an angle is not finite (with the operation's position).
pub fn final_probabilities(n_atoms: u32, ops: &[SpinOp]) -> Result<Vec<f64>, QuditError> {
    let mut state = SpinState::new(n_atoms.max(1));
    state.reset(n_atoms)?;
    for (i, &op) in ops.iter().enumerate() {
        state.apply(op).map_err(|e| match e {
            QuditError::NonFiniteAngle { op, .. } => QuditError::NonFiniteAngle {
                op,
                position: Some(i),
            },
            other => other,
        })?;
    }
    let mut p = vec![0.0; n_atoms as usize + 1];
    state.probabilities_into(&mut p)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use std::f64::consts::FRAC_PI_2;

    /// P(k) = C(N,k) cos^{2(N-k)}(θ/2) sin^{2k}(θ/2).
    fn binomial_closed_form(n: u32, theta: f64) -> Vec<f64> {
        let (c2, s2) = ((theta / 2.0).cos().powi(2), (theta / 2.0).sin().powi(2));
        let mut binom = 1.0;
        (0..=n)
            .map(|k| {
                if k > 0 {
                    binom = binom * f64::from(n - k + 1) / f64::from(k);
                }
                binom * c2.powi((n - k) as i32) * s2.powi(k as i32)
            })
            .collect()
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn rlx_pi_moves_every_atom() {
        for n in [1, 2, 7, 500] {
            let p = final_probabilities(n, &[SpinOp::Rx(PI)]).unwrap();
            assert!(
                (p[n as usize] - 1.0).abs() < 1e-10,
                "N={n}: P(N)={}",
                p[n as usize]
            );
        }
    }

    #[test]
    fn single_rlx_matches_binomial_law() {
        for n in [1, 5, 50, 500] {
            for theta in [0.01, 0.3, FRAC_PI_2, 2.0, 3.0, 4.4, 2.0 * PI, 9.1] {
                let p = final_probabilities(n, &[SpinOp::Rx(theta)]).unwrap();
                let want = binomial_closed_form(n, theta);
                let err = max_abs_diff(&p, &want);
                assert!(err < 1e-11, "N={n} θ={theta}: max error {err}");
            }
        }
    }

    #[test]
    fn large_rlx_angles_match_binomial_law() {
        for (n, theta) in [(500, 20.0 * PI - 0.3), (50, 20.0 * PI), (5, 61.0)] {
            let p = final_probabilities(n, &[SpinOp::Rx(theta)]).unwrap();
            let err = max_abs_diff(&p, &binomial_closed_form(n, theta));
            assert!(err < 1e-9, "N={n} θ={theta}: max error {err}");
        }
    }

    // ---- independent dense reference for small N -------------------------------------------

    type Mat = Vec<Vec<f64>>;

    /// Cyclic Jacobi eigenvalue routine: returns (λ, V) with A = V·diag(λ)·Vᵀ.
    fn jacobi_eigen(mut a: Mat) -> (Vec<f64>, Mat) {
        let n = a.len();
        let mut v: Mat = (0..n)
            .map(|i| (0..n).map(|k| if i == k { 1.0 } else { 0.0 }).collect())
            .collect();
        for _sweep in 0..100 {
            let off: f64 = (0..n)
                .flat_map(|p| ((p + 1)..n).map(move |q| (p, q)))
                .map(|(p, q)| a[p][q] * a[p][q])
                .sum();
            if off < 1e-32 {
                break;
            }
            for p in 0..n {
                for q in (p + 1)..n {
                    if a[p][q].abs() < 1e-300 {
                        continue;
                    }
                    let th = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                    let t = th.signum() / (th.abs() + (th * th + 1.0).sqrt());
                    let c = 1.0 / (t * t + 1.0).sqrt();
                    let s = t * c;
                    for row in a.iter_mut() {
                        let (x, y) = (row[p], row[q]);
                        row[p] = c * x - s * y;
                        row[q] = s * x + c * y;
                    }
                    let (row_p, row_q) = (a[p].clone(), a[q].clone());
                    a[p] = row_p
                        .iter()
                        .zip(&row_q)
                        .map(|(x, y)| c * x - s * y)
                        .collect();
                    a[q] = row_p
                        .iter()
                        .zip(&row_q)
                        .map(|(x, y)| s * x + c * y)
                        .collect();
                    for row in v.iter_mut() {
                        let (x, y) = (row[p], row[q]);
                        row[p] = c * x - s * y;
                        row[q] = s * x + c * y;
                    }
                }
            }
        }
        ((0..n).map(|i| a[i][i]).collect(), v)
    }

    /// Dense generator of `op` in the m = j, j-1, …, -j basis, built from the textbook formulas.
    fn dense_generator(n: u32, op: SpinOp) -> Mat {
        let dim = n as usize + 1;
        let j = f64::from(n) / 2.0;
        let m = |k: usize| j - k as f64;
        let mut a = vec![vec![0.0; dim]; dim];
        for k in 0..dim {
            match op {
                SpinOp::Rx(_) => {
                    if k > 0 {
                        // <m+1| L+ |m> with m = m(k), m+1 = m(k-1).
                        let lp = (j * (j + 1.0) - m(k) * (m(k) + 1.0)).sqrt();
                        a[k - 1][k] = lp / 2.0;
                        a[k][k - 1] = lp / 2.0;
                    }
                }
                SpinOp::Rz(_) => a[k][k] = m(k),
                SpinOp::Rz2(_) => a[k][k] = m(k) * m(k),
            }
        }
        a
    }

    /// ψ ← V·diag(e^{-iθλ})·Vᵀ ψ.
    fn dense_apply(re: &mut [f64], im: &mut [f64], n: u32, op: SpinOp) {
        let a = dense_generator(n, op);
        let (lambda, v) = jacobi_eigen(a.clone());
        let dim = lambda.len();
        // The decomposition itself must reproduce A.
        for r in 0..dim {
            for c in 0..dim {
                let back: f64 = (0..dim).map(|i| v[r][i] * lambda[i] * v[c][i]).sum();
                assert!((back - a[r][c]).abs() < 1e-12, "Jacobi failed at ({r},{c})");
            }
        }
        let theta = op.angle();
        let (mut out_re, mut out_im) = (vec![0.0; dim], vec![0.0; dim]);
        for i in 0..dim {
            // y_i = (Vᵀψ)_i · e^{-iθλ_i}
            let pr: f64 = (0..dim).map(|k| v[k][i] * re[k]).sum();
            let pi: f64 = (0..dim).map(|k| v[k][i] * im[k]).sum();
            let (s, c) = (-theta * lambda[i]).sin_cos();
            let (yr, yi) = (c * pr - s * pi, c * pi + s * pr);
            for r in 0..dim {
                out_re[r] += v[r][i] * yr;
                out_im[r] += v[r][i] * yi;
            }
        }
        re.copy_from_slice(&out_re);
        im.copy_from_slice(&out_im);
    }

    fn dense_probabilities(n: u32, ops: &[SpinOp]) -> Vec<f64> {
        let dim = n as usize + 1;
        let (mut re, mut im) = (vec![0.0; dim], vec![0.0; dim]);
        re[0] = 1.0;
        for &op in ops {
            dense_apply(&mut re, &mut im, n, op);
        }
        re.iter().zip(&im).map(|(r, i)| r * r + i * i).collect()
    }

    #[test]
    fn sequences_match_dense_jacobi_reference() {
        use SpinOp::*;
        let sequences: [&[SpinOp]; 4] = [
            &[Rx(0.3), Rz2(1.1), Rx(2.0), Rz(0.7), Rx(1.3)],
            &[Rx(FRAC_PI_2), Rz(1.9), Rx(FRAC_PI_2)],
            &[
                Rx(1.0),
                Rz2(0.4),
                Rx(-0.8),
                Rz2(17.0),
                Rx(6.1),
                Rz(-2.5),
                Rx(0.9),
            ],
            &[Rz(0.5), Rx(2.7), Rz2(55.0), Rx(0.2)],
        ];
        for n in 1..=8 {
            for ops in sequences {
                let got = final_probabilities(n, ops).unwrap();
                let want = dense_probabilities(n, ops);
                let err = max_abs_diff(&got, &want);
                assert!(err < 1e-10, "N={n} ops={ops:?}: max error {err}");
            }
        }
    }

    #[test]
    fn phases_between_rotations_change_the_outcome() {
        use SpinOp::*;
        let n = 6;
        let with_rz = final_probabilities(n, &[Rx(FRAC_PI_2), Rz(1.9), Rx(FRAC_PI_2)]).unwrap();
        let without = final_probabilities(n, &[Rx(FRAC_PI_2), Rx(FRAC_PI_2)]).unwrap();
        assert!(max_abs_diff(&with_rz, &without) > 0.05);
        // One-axis twisting squeezes: the outcome after the second rotation changes.
        let twisted = final_probabilities(n, &[Rx(0.3), Rz2(1.1), Rx(2.0)]).unwrap();
        let plain = final_probabilities(n, &[Rx(0.3), Rx(2.0)]).unwrap();
        assert!(max_abs_diff(&twisted, &plain) > 0.05);
        // A lone phase on the start state does nothing to the probabilities.
        let p = final_probabilities(n, &[Rz(0.4), Rz2(2.0)]).unwrap();
        assert!((p[0] - 1.0).abs() < 1e-15);
    }

    fn random_op(rng: &mut ChaCha8Rng) -> SpinOp {
        match rng.gen_range(0..3) {
            0 => SpinOp::Rx(rng.gen_range(-2.0 * PI..2.0 * PI)),
            1 => SpinOp::Rz(rng.gen_range(-2.0 * PI..2.0 * PI)),
            _ => SpinOp::Rz2(rng.gen_range(0.0..20.0 * PI)),
        }
    }

    #[test]
    fn norm_is_preserved_by_random_operations() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut state = SpinState::new(100);
        state.reset(100).unwrap();
        for _ in 0..20 {
            state.apply(random_op(&mut rng)).unwrap();
            assert!((state.norm() - 1.0).abs() < 1e-12, "norm {}", state.norm());
        }
    }

    #[test]
    fn inverse_sequence_returns_to_start_state() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut state = SpinState::new(40);
        for case in 0..16 {
            let n = rng.gen_range(1..=40);
            state.reset(n).unwrap();
            let ops: Vec<SpinOp> = (0..6).map(|_| random_op(&mut rng)).collect();
            for &op in &ops {
                state.apply(op).unwrap();
            }
            for op in ops.iter().rev() {
                let inverse = match *op {
                    SpinOp::Rx(t) => SpinOp::Rx(-t),
                    SpinOp::Rz(t) => SpinOp::Rz(-t),
                    SpinOp::Rz2(t) => SpinOp::Rz2(-t),
                };
                state.apply(inverse).unwrap();
            }
            let mut p = vec![0.0; n as usize + 1];
            state.probabilities_into(&mut p).unwrap();
            assert!((p[0] - 1.0).abs() < 1e-11, "case {case} N={n}: {ops:?}");
        }
    }

    #[test]
    fn rlz2_phases_keep_full_precision_on_500_atoms() {
        // θ·m² reaches ~1e7 rad here; a plain f64 product would be off by ~1e-10 rad.
        let (n, theta) = (500u32, 61.3_f64);
        let mut state = SpinState::new(n);
        state.reset(n).unwrap();
        state.apply(SpinOp::Rx(FRAC_PI_2)).unwrap();
        let (re0, im0) = (state.re.clone(), state.im.clone());
        state.apply(SpinOp::Rz2(theta)).unwrap();
        // Reference: split θ = hi + lo with hi on 26 bits, so hi·(2m)² is exact in f64.
        let hi = f64::from_bits(theta.to_bits() & !((1u64 << 27) - 1));
        let lo = theta - hi;
        for k in 0..=n as usize {
            let q = (i64::from(n) - 2 * k as i64) as f64;
            let (s1, c1) = (-(hi * q * q) * 0.25).sin_cos();
            let (s2, c2) = (-(lo * q * q) * 0.25).sin_cos();
            let (c, s) = (c1 * c2 - s1 * s2, s1 * c2 + c1 * s2);
            let want_re = c * re0[k] - s * im0[k];
            let want_im = c * im0[k] + s * re0[k];
            let mag = (re0[k] * re0[k] + im0[k] * im0[k]).sqrt();
            let diff = ((state.re[k] - want_re).powi(2) + (state.im[k] - want_im).powi(2)).sqrt();
            assert!(
                diff <= 1e-13 * mag,
                "k={k}: relative phase error {}",
                diff / mag
            );
        }
    }

    #[test]
    fn huge_angles_are_reduced_by_their_period() {
        use SpinOp::*;
        let n = 9;
        let base = final_probabilities(n, &[Rx(0.3), Rz(0.8), Rz2(0.5), Rx(1.1)]).unwrap();
        let big = [
            Rx(0.3 + 400.0 * PI),
            Rz(0.8 - 1000.0 * PI),
            Rz2(0.5 + 800.0 * PI),
            Rx(1.1),
        ];
        let err = max_abs_diff(&base, &final_probabilities(n, &big).unwrap());
        assert!(err < 1e-9, "error {err}");
        // Absurd but finite angles still give a normalised state, quickly.
        let p = final_probabilities(n, &[Rx(1e300), Rz2(-1e300), Rx(3e200)]).unwrap();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bessel_table_matches_integral_representation() {
        // J_k(a) = (1/π) ∫_0^π cos(kτ − a·sin τ) dτ, by the trapezoid rule (spectrally accurate).
        fn bessel_integral(k: usize, a: f64) -> f64 {
            let m = 4096;
            let h = PI / m as f64;
            let f = |t: f64| (k as f64 * t - a * t.sin()).cos();
            let inner: f64 = (1..m).map(|i| f(i as f64 * h)).sum();
            (inner + 0.5 * (f(0.0) + f(PI))) * h / PI
        }
        assert!(miller_start(A_MAX) + 2 <= BESSEL_LEN);
        let mut table = vec![0.0; BESSEL_LEN];
        for a in [1e-6, 0.5, 1.0, 7.3, 64.0, 200.5, 256.0] {
            let terms = bessel_table(a, &mut table);
            assert!(terms as f64 > a, "a={a}: only {terms} terms");
            for k in (0..terms + 5).step_by(3) {
                let want = bessel_integral(k, a);
                assert!(
                    (table[k] - want).abs() < 1e-13,
                    "J_{k}({a}) = {} but integral gives {want}",
                    table[k]
                );
            }
            assert!(table[terms].abs() < TERM_TOL);
        }
    }

    #[test]
    fn shot_uniform_is_deterministic_and_in_range() {
        assert_eq!(shot_uniform(7, 0, 0), shot_uniform(7, 0, 0));
        assert_eq!(shot_uniform(7, 3, 99), shot_uniform(7, 3, 99));
        // Pinned values: a change here breaks the reproducibility of every seeded job.
        assert_eq!(shot_uniform(7, 0, 0).to_bits(), GOLDEN_7_0_0);
        assert_eq!(shot_uniform(7, 2, 12345).to_bits(), GOLDEN_7_2_12345);
        let mut seen = std::collections::HashSet::new();
        for shot in 0..1000 {
            let u = shot_uniform(42, 1, shot);
            assert!((0.0..1.0).contains(&u), "u = {u}");
            assert!(seen.insert(u.to_bits()), "shot {shot} repeats a value");
        }
        assert_ne!(shot_uniform(42, 1, 5), shot_uniform(42, 2, 5));
        assert_ne!(shot_uniform(42, 1, 5), shot_uniform(43, 1, 5));
        assert!((0.0..1.0).contains(&shot_uniform(u64::MAX, u32::MAX, u64::MAX)));
    }

    #[test]
    fn shot_uniform_reads_the_experiment_stream_in_order() {
        // The contract restated: shot s is the s-th u64 of stream `experiment` of the key.
        let seed = 99u64;
        let mut key = [0u8; 32];
        let mut sm = seed;
        for i in 0..4 {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            key[8 * i..8 * i + 8].copy_from_slice(&z.to_le_bytes());
        }
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(3);
        for shot in 0..100 {
            let want = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            assert_eq!(shot_uniform(seed, 3, shot), want, "shot {shot}");
        }
    }

    const GOLDEN_7_0_0: u64 = 4600886296990458004;
    const GOLDEN_7_2_12345: u64 = 4590953951982268600;

    #[test]
    fn sampled_shots_follow_the_binomial_law() {
        let n = 4;
        let p = final_probabilities(n, &[SpinOp::Rx(FRAC_PI_2)]).unwrap();
        let sampler = OutcomeSampler::from_probabilities(&p).unwrap();
        assert_eq!(sampler.len(), 5);
        let shots = 20_000;
        let mut counts = [0u32; 5];
        for shot in 0..shots {
            counts[sampler.sample(shot_uniform(2024, 0, shot)) as usize] += 1;
        }
        let binomial = [1.0, 4.0, 6.0, 4.0, 1.0].map(|c| c / 16.0);
        for k in 0..5 {
            let freq = f64::from(counts[k]) / shots as f64;
            assert!(
                (freq - binomial[k]).abs() < 0.02,
                "k={k}: {freq} vs {}",
                binomial[k]
            );
        }
    }

    #[test]
    fn sampler_renormalises_and_never_returns_impossible_outcomes() {
        let s = OutcomeSampler::from_probabilities(&[0.0, 2.0, 0.0, 2.0, 0.0]).unwrap();
        assert_eq!(s.sample(0.0), 1);
        assert_eq!(s.sample(0.49), 1);
        assert_eq!(s.sample(0.5), 3);
        assert_eq!(s.sample(0.999_999), 3);
        assert_eq!(s.sample(1.0), 3);
        assert_eq!(s.sample(7.0), 3);
        assert_eq!(s.sample(-1.0), 1);
        assert_eq!(s.sample(f64::NAN), 1);
        let huge = OutcomeSampler::from_probabilities(&[f64::MAX, f64::MAX]).unwrap();
        assert_eq!(huge.sample(0.25), 0);
        assert_eq!(huge.sample(0.75), 1);
    }

    #[test]
    fn sampler_rejects_bad_probabilities() {
        assert_eq!(
            OutcomeSampler::from_probabilities(&[]),
            Err(QuditError::NoOutcomes)
        );
        assert!(matches!(
            OutcomeSampler::from_probabilities(&[0.5, f64::NAN]),
            Err(QuditError::InvalidProbability { index: 1, value }) if value.is_nan()
        ));
        assert!(matches!(
            OutcomeSampler::from_probabilities(&[0.5, -0.1]),
            Err(QuditError::InvalidProbability { index: 1, .. })
        ));
        assert!(matches!(
            OutcomeSampler::from_probabilities(&[0.5, f64::INFINITY]),
            Err(QuditError::InvalidProbability { index: 1, .. })
        ));
        assert_eq!(
            OutcomeSampler::from_probabilities(&[0.0, 0.0]),
            Err(QuditError::ZeroTotalProbability)
        );
    }

    #[test]
    fn invalid_inputs_are_reported() {
        let mut state = SpinState::new(10);
        let err = state.reset(0).unwrap_err();
        assert_eq!(
            err,
            QuditError::AtomCountOutOfRange {
                n_atoms: 0,
                n_max: 10
            }
        );
        assert_eq!(
            err.to_string(),
            "atom number 0 is out of range: must be in 1..=10"
        );
        assert!(matches!(
            state.reset(11),
            Err(QuditError::AtomCountOutOfRange {
                n_atoms: 11,
                n_max: 10
            })
        ));
        state.reset(10).unwrap();
        state.apply(SpinOp::Rx(0.4)).unwrap();
        let before = state.norm();
        let err = state.apply(SpinOp::Rx(f64::NAN)).unwrap_err();
        assert!(err.to_string().contains("rlx angle is NaN"), "{err}");
        assert!(state.apply(SpinOp::Rz2(f64::INFINITY)).is_err());
        assert!(state.apply(SpinOp::Rz(f64::NEG_INFINITY)).is_err());
        assert_eq!(
            state.norm(),
            before,
            "a rejected operation must not touch the state"
        );
        let mut short = [0.0; 10];
        assert_eq!(
            state.probabilities_into(&mut short),
            Err(QuditError::OutputTooShort {
                len: 10,
                needed: 11
            })
        );
        let err = final_probabilities(3, &[SpinOp::Rx(1.0), SpinOp::Rz(f64::NAN)]).unwrap_err();
        assert!(err.to_string().ends_with("(operation #1)"), "{err}");
        assert!(final_probabilities(0, &[]).is_err());
    }
}
