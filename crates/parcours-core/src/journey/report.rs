//! Did it work? A journey's treatment against its holdout: conversion rates, uplift,
//! incremental conversions and a two-proportion z-test.

use serde::Serialize;

use crate::stats::two_proportions;

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
    /// Too few customers, conversions or non-conversions in a group to conclude (see
    /// [`crate::stats::Comparison::underpowered`]).
    pub underpowered: bool,
}

/// Compares a treatment (`converted` of `entered`) with its control. `None` when a group
/// is empty, or when nobody (or everybody) converted in both (no variance to test).
pub fn compare(control: (u64, u64), treatment: (u64, u64)) -> Option<Comparison> {
    let c = two_proportions(treatment.0, treatment.1, control.0, control.1)?;
    Some(Comparison {
        control_rate: c.rate_b,
        treatment_rate: c.rate_a,
        uplift: c.uplift,
        relative_uplift: c.relative,
        incremental_conversions: treatment.0 as f64 - c.rate_b * treatment.1 as f64,
        z: c.z,
        p_value: c.p_value,
        ci95: (c.ci_low, c.ci_high),
        underpowered: c.underpowered,
    })
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
    fn degenerate_groups_have_no_test() {
        assert_eq!(compare((0, 0), (1, 10)), None);
        assert_eq!(compare((0, 10), (0, 10)), None);
        assert_eq!(compare((11, 10), (0, 10)), None);
    }
}
