//! Comparing two conversion rates: a group against its control (a journey's treatment against
//! its holdout), with the two-proportion z-test and a 95% confidence interval of the
//! difference.

/// The 97.5th percentile of the standard normal distribution.
const Z_95: f64 = 1.959_963_984_540_054;

/// Below this many customers in either group, a difference says little: the answer says so.
pub const UNDERPOWERED_BELOW: u64 = 100;

/// Group `a` (treated) against group `b` (control).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub rate_a: f64,
    pub rate_b: f64,
    /// `rate_a - rate_b`.
    pub uplift: f64,
    /// `uplift / rate_b`, when the control converted at all.
    pub relative: Option<f64>,
    /// The two-proportion z statistic (pooled standard error).
    pub z: f64,
    /// Two-sided.
    pub p_value: f64,
    /// 95% confidence interval of the uplift (unpooled standard error).
    pub ci_low: f64,
    pub ci_high: f64,
    /// Either group has fewer than [`UNDERPOWERED_BELOW`] customers, or fewer than 10
    /// conversions or non-conversions: the normal approximation (and so `z` and `p_value`) is
    /// not to be trusted yet.
    pub underpowered: bool,
}

/// Compares `conv_a` conversions out of `n_a` with `conv_b` out of `n_b`; `None` when a group
/// is empty or every customer of both did the same (nothing to compare).
pub fn two_proportions(conv_a: u64, n_a: u64, conv_b: u64, n_b: u64) -> Option<Comparison> {
    if n_a == 0 || n_b == 0 || conv_a > n_a || conv_b > n_b {
        return None;
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let (pa, pb) = (conv_a as f64 / na, conv_b as f64 / nb);
    let pooled = (conv_a + conv_b) as f64 / (na + nb);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    if se == 0.0 {
        return None;
    }
    let z = (pa - pb) / se;
    let unpooled = (pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb).sqrt();
    let uplift = pa - pb;
    Some(Comparison {
        rate_a: pa,
        rate_b: pb,
        uplift,
        relative: (pb > 0.0).then(|| uplift / pb),
        z,
        p_value: erfc(z.abs() / std::f64::consts::SQRT_2),
        ci_low: uplift - Z_95 * unpooled,
        ci_high: uplift + Z_95 * unpooled,
        underpowered: n_a.min(n_b) < UNDERPOWERED_BELOW
            || [conv_a, n_a - conv_a, conv_b, n_b - conv_b]
                .iter()
                .any(|&c| c < 10),
    })
}

/// Net Promoter Score of 0–10 answers: promoters answer 9 or 10, detractors 0 to 6, passives
/// 7 or 8; the score is the promoters' percentage less the detractors' (−100 to +100).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Nps {
    pub promoters: u64,
    pub passives: u64,
    pub detractors: u64,
    pub score: f64,
}

/// The NPS of these answers (answers above 10 are not answers and are left out); `None`
/// without any.
pub fn nps(answers: impl IntoIterator<Item = u8>) -> Option<Nps> {
    let (mut promoters, mut passives, mut detractors) = (0u64, 0u64, 0u64);
    for a in answers {
        match a {
            9 | 10 => promoters += 1,
            7 | 8 => passives += 1,
            0..=6 => detractors += 1,
            _ => {}
        }
    }
    let n = promoters + passives + detractors;
    (n > 0).then(|| Nps {
        promoters,
        passives,
        detractors,
        score: 100.0 * (promoters as f64 - detractors as f64) / n as f64,
    })
}

/// Count, sum and sum of squares of a group's values (the revenue of each of its customers).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Moments {
    pub n: u64,
    pub sum: f64,
    #[serde(skip)]
    pub sum_sq: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The sample variance (`n - 1` in the denominator).
    fn variance(&self) -> Option<f64> {
        let mean = self.mean()?;
        (self.n > 1)
            .then(|| ((self.sum_sq - self.n as f64 * mean * mean) / (self.n - 1) as f64).max(0.0))
    }
}

/// The mean of group `a` (treated) against the mean of group `b` (control), as for revenue
/// per customer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MeanDifference {
    pub mean_a: f64,
    pub mean_b: f64,
    /// `mean_a - mean_b`.
    pub difference: f64,
    /// What group `a` had beyond what it would have had at `b`'s mean: `difference × n_a`.
    pub incremental: f64,
    /// 95% confidence interval of the difference (Welch's standard error, normal
    /// approximation).
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Compares the means of two groups; `None` when a group has fewer than two values.
pub fn two_means(a: Moments, b: Moments) -> Option<MeanDifference> {
    let (va, vb) = (a.variance()?, b.variance()?);
    let (mean_a, mean_b) = (a.mean()?, b.mean()?);
    let difference = mean_a - mean_b;
    let se = (va / a.n as f64 + vb / b.n as f64).sqrt();
    Some(MeanDifference {
        mean_a,
        mean_b,
        difference,
        incremental: difference * a.n as f64,
        ci_low: difference - Z_95 * se,
        ci_high: difference + Z_95 * se,
    })
}

/// The complementary error function: its Taylor series below 1.5, its continued fraction
/// above (relative error below 1e-11 where p-values live).
pub fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    // For small x, 1 - erf(x) from the Taylor series of erf.
    if x < 1.5 {
        let mut term = x;
        let mut sum = x;
        let x2 = x * x;
        for n in 1..80 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        return 1.0 - sum * 2.0 / std::f64::consts::PI.sqrt();
    }
    // Otherwise the continued fraction (Lentz), which converges well for x >= 1.5.
    let tiny = 1e-300;
    let mut f = tiny;
    let mut c = f;
    let mut d = 0.0;
    // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …))))
    for i in 0..300 {
        let (a, b) = if i == 0 {
            (1.0, x)
        } else {
            (i as f64 / 2.0, x)
        };
        d = b + a * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = b + a / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() * f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-12)
    }

    /// Reference values from Python's `math.erfc` and the textbook formulas.
    #[test]
    fn matches_the_reference_values() {
        let c = two_proportions(200, 1000, 150, 1000).unwrap();
        assert!(close(c.z, 2.942_449_431_682_5, 1e-9), "{c:?}");
        assert!(close(c.p_value, 0.003_256_269_628_412_063, 1e-5), "{c:?}");
        assert!(close(c.ci_low, 0.016_767_193_754_520_82, 1e-9), "{c:?}");
        assert!(close(c.ci_high, 0.083_232_806_245_479_21, 1e-9), "{c:?}");
        assert!(close(c.relative.unwrap(), 1.0 / 3.0, 1e-12));
        assert!(!c.underpowered);
        let c = two_proportions(30, 500, 25, 480).unwrap();
        assert!(close(c.z, 0.538_280_697_913_374_4, 1e-9), "{c:?}");
        assert!(close(c.p_value, 0.590_383_275_048_202, 1e-5), "{c:?}");
        assert!(c.ci_low < 0.0 && c.ci_high > 0.0);
        let c = two_proportions(1, 10, 0, 10).unwrap();
        assert!(close(c.p_value, 0.304_901_788_178_788_44, 1e-5), "{c:?}");
        assert_eq!(c.relative, None);
        assert!(c.underpowered);
    }

    /// The reference cases: control 10/490 against treatment 17/500, and an NPS of
    /// 30 % promoters and 20 % detractors.
    #[test]
    fn the_reference_z_test_and_nps() {
        let c = two_proportions(17, 500, 10, 490).unwrap();
        assert!((c.z - 1.313).abs() < 5e-4, "{c:?}");
        let answers = (0..100u8).map(|i| match i {
            0..=29 => 9 + i % 2,
            30..=79 => 7 + i % 2,
            _ => i % 7,
        });
        let n = nps(answers).unwrap();
        assert_eq!((n.promoters, n.passives, n.detractors), (30, 50, 20));
        assert!((n.score - 10.0).abs() < 1e-12);
        assert_eq!(nps([11, 42]), None);
        assert_eq!(nps([0]).unwrap().score, -100.0);
    }

    #[test]
    fn nothing_to_compare() {
        assert_eq!(two_proportions(0, 0, 1, 10), None);
        assert_eq!(two_proportions(0, 10, 0, 10), None);
        assert_eq!(two_proportions(10, 10, 10, 10), None);
        assert_eq!(two_proportions(11, 10, 1, 10), None);
    }

    #[test]
    fn erfc_matches_known_values() {
        for (x, want) in [
            (0.0, 1.0),
            (0.1, 0.887_537_083_981_715),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285),
            (1.959_964, 0.005_574_596_306_381_993),
            (4.5, 1.966_160_441_542_887e-10),
            (3.0, 2.209_049_699_858_544e-5),
            (-1.0, 1.842_700_792_949_715),
        ] {
            let got = erfc(x);
            assert!(
                (got - want).abs() <= 1e-11 * want,
                "erfc({x}) = {got}, want {want}"
            );
        }
    }

    /// Revenue per customer: 3 of 4 treated spent 10, 1 of 4 controls did.
    #[test]
    fn means_and_incremental_revenue() {
        let (mut a, mut b) = (Moments::default(), Moments::default());
        for x in [10.0, 10.0, 10.0, 0.0] {
            a.add(x);
        }
        for x in [10.0, 0.0, 0.0, 0.0] {
            b.add(x);
        }
        let d = two_means(a, b).unwrap();
        assert_eq!((d.mean_a, d.mean_b, d.difference), (7.5, 2.5, 5.0));
        assert!((d.incremental - 20.0).abs() < 1e-12);
        // Both sample variances are 25; the standard error is sqrt(25/4 + 25/4).
        let half = Z_95 * (12.5f64).sqrt();
        assert!(
            (d.ci_low - (5.0 - half)).abs() < 1e-12 && (d.ci_high - (5.0 + half)).abs() < 1e-12
        );
        let mut one = Moments::default();
        one.add(3.0);
        assert_eq!(two_means(one, b), None, "one value has no variance");
    }

    #[test]
    fn erfc_is_accurate_and_symmetric() {
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_13),
            (2.0, 0.004_677_734_981_047_266),
            (3.0, 2.209_049_699_858_544e-5),
        ] {
            assert!(close(erfc(x), want, 1.2e-7), "erfc({x}) = {}", erfc(x));
            assert!(close(erfc(-x), 2.0 - want, 1.2e-7));
        }
    }
}
