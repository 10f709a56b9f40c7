//! Did it work? A journey's treatment against its holdout: conversion rates, uplift,
//! incremental conversions and a two-proportion z-test.

use serde::Serialize;

/// Two groups compared.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// Conversion rate of the control group (the holdout).
    pub control_rate: f64,
    pub treatment_rate: f64,
    /// Treatment rate minus control rate (percentage points, as a fraction).
    pub uplift: f64,
    /// Uplift relative to the control rate (`None` when the control converted no one).
    pub relative_uplift: Option<f64>,
    /// Conversions the treatment would not have had at the control's rate.
    pub incremental_conversions: f64,
    /// The pooled two-proportion z statistic.
    pub z: f64,
    /// Two-sided p-value of `z`.
    pub p_value: f64,
    /// 95% confidence interval of the uplift (unpooled standard error).
    pub ci95: (f64, f64),
    /// Fewer than 10 conversions or non-conversions in a group: the normal approximation
    /// (and so `z` and `p_value`) is not to be trusted yet.
    pub underpowered: bool,
}

/// Compares a treatment (`converted` of `entered`) with its control. `None` when a group
/// is empty, or when nobody (or everybody) converted in both (no variance to test).
pub fn compare(control: (u64, u64), treatment: (u64, u64)) -> Option<Comparison> {
    let (c1, n1) = (control.0 as f64, control.1 as f64);
    let (c2, n2) = (treatment.0 as f64, treatment.1 as f64);
    if control.1 == 0 || treatment.1 == 0 || control.0 > control.1 || treatment.0 > treatment.1 {
        return None;
    }
    let (p1, p2) = (c1 / n1, c2 / n2);
    let pooled = (c1 + c2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return None;
    }
    let z = (p2 - p1) / se;
    let unpooled = (p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2).sqrt();
    let uplift = p2 - p1;
    let small = |c: f64, n: f64| c < 10.0 || n - c < 10.0;
    Some(Comparison {
        control_rate: p1,
        treatment_rate: p2,
        uplift,
        relative_uplift: (p1 > 0.0).then(|| uplift / p1),
        incremental_conversions: c2 - p1 * n2,
        z,
        p_value: erfc(z.abs() / std::f64::consts::SQRT_2),
        ci95: (uplift - 1.959_964 * unpooled, uplift + 1.959_964 * unpooled),
        underpowered: small(c1, n1) || small(c2, n2),
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

    #[test]
    fn the_reference_case() {
        // Control 10/490 against treatment 17/500: pooled z ≈ 1.313.
        let c = compare((10, 490), (17, 500)).unwrap();
        assert!((c.z - 1.312_755_247_516_363).abs() < 1e-12, "{}", c.z);
        assert!(
            (c.p_value - 0.189_265_434_475_946).abs() < 1e-9,
            "{}",
            c.p_value
        );
        assert!((c.control_rate - 10.0 / 490.0).abs() < 1e-15);
        assert!((c.uplift - (0.034 - 10.0 / 490.0)).abs() < 1e-15);
        assert!((c.incremental_conversions - (17.0 - 500.0 * 10.0 / 490.0)).abs() < 1e-12);
        assert!(c.ci95.0 < c.uplift && c.uplift < c.ci95.1 && c.ci95.0 < 0.0);
        assert!(!c.underpowered);
        assert!(compare((3, 40), (5, 40)).unwrap().underpowered);
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

    #[test]
    fn degenerate_groups_have_no_test() {
        assert_eq!(compare((0, 0), (1, 10)), None);
        assert_eq!(compare((0, 10), (0, 10)), None);
        assert_eq!(compare((11, 10), (0, 10)), None);
    }
}
