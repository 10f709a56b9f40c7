//! Did a journey work? Its runs by group (each variant, everyone treated, the journey's own
//! holdout, the workspace's global control group), each group's conversions (runs that met the
//! journey's goal) and what its customers bought in the window after they entered (orders
//! read from the log, as the KPIs count them), and each treated group against each control:
//! the two-proportion z-test of the conversion rates and the difference of revenue per
//! entrant, with the incremental conversions and revenue.

use std::collections::HashMap;

use parcours_core::journey::report::{compare, Comparison};
use parcours_core::kpi;
use parcours_core::stats::{two_means, MeanDifference, Moments};
use parcours_core::table::{self, ParseError, Separator};
use parcours_core::time::{Millis, DAY};
use parcours_store::{Entrant, Store};
use serde::Serialize;

use super::{csv_field, Read, Snapshots, MAX_WINDOW_DAYS};
use crate::{Actor, ServiceError};

/// The default window after entry in which her orders count as the journey's outcome.
pub const DEFAULT_WINDOW_DAYS: i64 = 30;

/// One group of a journey's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// `variant a`…, `treatment` (every treated run), `holdout`, `global control`.
    pub group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Runs (a customer who entered twice counts twice).
    pub entered: u64,
    /// Runs that met the journey's goal.
    pub converted: u64,
    pub conversion_rate: Option<f64>,
    /// Runs followed by at least one order within the window.
    pub buyers: u64,
    pub orders: u64,
    pub revenue: f64,
    pub revenue_per_entrant: Option<f64>,
    #[serde(skip)]
    moments: Moments,
}

/// A treated group against a control group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Versus {
    pub group: String,
    pub against: String,
    /// Conversion rates: uplift, incremental conversions, z-test, interval, underpowered.
    pub conversions: Option<Comparison>,
    /// Revenue per entrant: difference, incremental revenue, interval.
    pub revenue: Option<MeanDifference>,
}

/// Groups and their comparisons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub groups: Vec<Group>,
    pub comparisons: Vec<Versus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Uplift {
    pub journey: String,
    pub window_days: i64,
    #[serde(flatten)]
    pub report: Report,
    /// Events read from the log.
    pub events_read: u64,
}

/// The uplift report of one journey of the actor's workspace.
pub fn uplift(
    store: &dyn Store,
    snapshots: &Snapshots,
    actor: &Actor,
    journey: &str,
    window_days: i64,
) -> Result<Uplift, ServiceError> {
    check_window(window_days)?;
    crate::journeys::get(store, actor, journey, None)?;
    let entrants = store.journey_entrants(&actor.workspace, journey)?;
    let read = snapshots.read(store, &actor.workspace, None)?;
    Ok(uplift_of(&read, &entrants, journey, window_days))
}

fn check_window(window_days: i64) -> Result<(), ServiceError> {
    if (1..=MAX_WINDOW_DAYS).contains(&window_days) {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "invalid_parameter",
            format!("`window` is 1 to {MAX_WINDOW_DAYS} days, not {window_days}"),
        ))
    }
}

/// [`uplift`] over a log already read.
pub fn uplift_of(read: &Read, entrants: &[Entrant], journey: &str, window_days: i64) -> Uplift {
    // Each person's orders, by time.
    let mut orders: HashMap<u32, Vec<(Millis, f64)>> = HashMap::new();
    for (person, at, value) in kpi::orders(&read.input) {
        orders.entry(person).or_default().push((at, value));
    }
    for list in orders.values_mut() {
        list.sort_by_key(|(at, _)| *at);
    }
    let window = window_days * DAY;
    let mut holdout = Group::named("holdout", None);
    let mut global = Group::named("global control", None);
    let mut treatment = Group::named("treatment", None);
    let mut variants: Vec<Group> = Vec::new();
    for e in entrants {
        let bought: &[(Millis, f64)] = read
            .person_of(&e.profile_id)
            .and_then(|p| orders.get(&p))
            .map_or(&[], |l| {
                let from = l.partition_point(|(at, _)| *at < e.entered_at);
                let to = l.partition_point(|(at, _)| *at < e.entered_at + window);
                &l[from..to]
            });
        let groups: Vec<&mut Group> = if e.global_control {
            vec![&mut global]
        } else if e.holdout {
            vec![&mut holdout]
        } else {
            let i = match variants.iter().position(|g| g.variant == e.variant) {
                Some(i) => i,
                None => {
                    let name = e
                        .variant
                        .as_deref()
                        .map_or("no variant".to_string(), |v| format!("variant {v}"));
                    variants.push(Group::named(&name, e.variant.clone()));
                    variants.len() - 1
                }
            };
            vec![&mut treatment, &mut variants[i]]
        };
        for g in groups {
            g.add(e.converted, bought);
        }
    }
    variants.sort_by(|a, b| a.variant.cmp(&b.variant));
    // Variants apart only when there are several (a journey without a split has one group,
    // the treatment itself).
    if variants.len() == 1 && variants[0].variant.is_none() {
        variants.clear();
    }
    Uplift {
        journey: journey.to_string(),
        window_days,
        report: report(treatment, variants, vec![holdout, global]),
        events_read: read.events,
    }
}

/// The groups (the treatment, its parts, the control groups that have anyone) and every
/// treated group against every control group.
fn report(treatment: Group, parts: Vec<Group>, controls: Vec<Group>) -> Report {
    let controls: Vec<Group> = controls.into_iter().filter(|c| c.entered > 0).collect();
    let mut comparisons = Vec::new();
    for control in &controls {
        for g in std::iter::once(&treatment).chain(&parts) {
            comparisons.push(Versus {
                group: g.group.clone(),
                against: control.group.clone(),
                conversions: compare(
                    (control.converted, control.entered),
                    (g.converted, g.entered),
                ),
                revenue: two_means(g.moments, control.moments),
            });
        }
    }
    let mut groups = vec![treatment];
    groups.extend(parts);
    groups.extend(controls);
    for g in &mut groups {
        g.finish();
    }
    Report {
        groups,
        comparisons,
    }
}

/// The report of customers given one per row, as `(group, converted, revenue)`: every group
/// but `control` is treated (together, `treatment`, and each apart when there are several).
/// `parcours report uplift` reads such a file.
pub fn of_customers(rows: impl IntoIterator<Item = (String, bool, f64)>, control: &str) -> Report {
    let mut held = Group::named(control, None);
    let mut treatment = Group::named("treatment", None);
    let mut parts: Vec<Group> = Vec::new();
    for (group, converted, revenue) in rows {
        let bought = [(0, revenue)];
        let bought: &[(Millis, f64)] = if revenue != 0.0 { &bought } else { &[] };
        if group == control {
            held.add(converted, bought);
            continue;
        }
        treatment.add(converted, bought);
        let i = match parts.iter().position(|g| g.group == group) {
            Some(i) => i,
            None => {
                parts.push(Group::named(&group, None));
                parts.len() - 1
            }
        };
        parts[i].add(converted, bought);
    }
    parts.sort_by(|a, b| a.group.cmp(&b.group));
    if parts.len() == 1 {
        // One treated group: the treatment is it.
        treatment.group = parts.remove(0).group;
    }
    report(treatment, parts, vec![held])
}

impl Group {
    fn named(name: &str, variant: Option<String>) -> Self {
        Group {
            group: name.to_string(),
            variant,
            entered: 0,
            converted: 0,
            conversion_rate: None,
            buyers: 0,
            orders: 0,
            revenue: 0.0,
            revenue_per_entrant: None,
            moments: Moments::default(),
        }
    }

    fn add(&mut self, converted: bool, bought: &[(Millis, f64)]) {
        self.entered += 1;
        self.converted += u64::from(converted);
        self.buyers += u64::from(!bought.is_empty());
        self.orders += bought.len() as u64;
        let revenue: f64 = bought.iter().map(|(_, v)| v).sum();
        self.revenue += revenue;
        self.moments.add(revenue);
    }

    fn finish(&mut self) {
        if self.entered > 0 {
            self.conversion_rate = Some(self.converted as f64 / self.entered as f64);
            self.revenue_per_entrant = self.moments.mean();
        }
    }
}

/// Reads customers for [`of_customers`], a customer a line, under a header naming `group`
/// and `converted` (`1` or `0`, `true` or `false`) and optionally `revenue` (what she spent
/// after she was treated, or would have been).
pub fn parse_customers(text: &str) -> Result<Vec<(String, bool, f64)>, ParseError> {
    let mut lines = table::lines(text);
    let Some((_, first)) = lines.next() else {
        return Err(ParseError {
            line: 1,
            message: "the file is empty".into(),
        });
    };
    let sep = Separator::of(first);
    let names: Vec<String> = sep.split(first).iter().map(|n| n.to_lowercase()).collect();
    let at = |n: &str| names.iter().position(|x| x == n);
    let (Some(group_at), Some(converted_at)) = (at("group"), at("converted")) else {
        return Err(ParseError {
            line: 1,
            message: "the header names the columns `group`, `converted` and optionally `revenue`"
                .into(),
        });
    };
    let revenue_at = at("revenue");
    let mut out = Vec::new();
    for (line, text) in lines {
        let f = sep.split(text);
        let field = |i: usize| {
            f.get(i).copied().ok_or_else(|| ParseError {
                line,
                message: format!("{} fields where {} were expected", f.len(), names.len()),
            })
        };
        let group = field(group_at)?;
        if group.is_empty() {
            return Err(ParseError {
                line,
                message: "the group is empty".into(),
            });
        }
        let converted = match field(converted_at)?.to_lowercase().as_str() {
            "1" | "true" => true,
            "0" | "false" => false,
            other => {
                return Err(ParseError {
                    line,
                    message: format!("converted is 1 or 0 (true or false), not {other:?}"),
                })
            }
        };
        let revenue = match revenue_at {
            Some(i) => table::amount(field(i)?, "revenue", line)?,
            None => 0.0,
        };
        out.push((group.to_string(), converted, revenue));
    }
    Ok(out)
}

/// The report as CSV: one line per group, then one per comparison.
pub fn uplift_csv(u: &Report) -> String {
    let opt = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
    let mut out = String::from(
        "group,against,entered,converted,conversion_rate,buyers,orders,revenue,revenue_per_entrant,\
uplift,incremental_conversions,z,p_value,ci_low,ci_high,underpowered,\
revenue_difference,incremental_revenue,revenue_ci_low,revenue_ci_high\n",
    );
    for g in &u.groups {
        out.push_str(&format!(
            "{},,{},{},{},{},{},{},{},,,,,,,,,,,\n",
            csv_field(&g.group),
            g.entered,
            g.converted,
            opt(g.conversion_rate),
            g.buyers,
            g.orders,
            g.revenue,
            opt(g.revenue_per_entrant),
        ));
    }
    for v in &u.comparisons {
        let c = v.conversions.as_ref();
        let r = v.revenue.as_ref();
        out.push_str(&format!(
            "{},{},,,,,,,,{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&v.group),
            csv_field(&v.against),
            opt(c.map(|c| c.uplift)),
            opt(c.map(|c| c.incremental_conversions)),
            opt(c.map(|c| c.z)),
            opt(c.map(|c| c.p_value)),
            opt(c.map(|c| c.ci95.0)),
            opt(c.map(|c| c.ci95.1)),
            c.map(|c| c.underpowered.to_string()).unwrap_or_default(),
            opt(r.map(|r| r.difference)),
            opt(r.map(|r| r.incremental)),
            opt(r.map(|r| r.ci_low)),
            opt(r.map(|r| r.ci_high)),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customers(group: &str, n: usize, converted: usize, spent: f64) -> Vec<(String, bool, f64)> {
        (0..n)
            .map(|i| {
                let c = i < converted;
                (group.to_string(), c, if c { spent } else { 0.0 })
            })
            .collect()
    }

    /// The reference z-test, with revenue: control 10/490, treatment 17/500, each
    /// buyer spending 50.
    #[test]
    fn the_reference_case_with_revenue() {
        let mut rows = customers("control", 490, 10, 50.0);
        rows.extend(customers("email", 500, 17, 50.0));
        let r = of_customers(rows, "control");
        let names: Vec<&str> = r.groups.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(names, ["email", "control"]);
        assert_eq!(
            (
                r.groups[0].entered,
                r.groups[0].converted,
                r.groups[0].buyers
            ),
            (500, 17, 17)
        );
        assert_eq!(r.groups[0].revenue, 850.0);
        assert_eq!(r.comparisons.len(), 1);
        let v = &r.comparisons[0];
        assert_eq!((v.group.as_str(), v.against.as_str()), ("email", "control"));
        let c = v.conversions.unwrap();
        assert!((c.z - 1.312_755_247_516_363).abs() < 1e-9, "{c:?}");
        assert!((c.incremental_conversions - (17.0 - 500.0 * 10.0 / 490.0)).abs() < 1e-9);
        let m = v.revenue.unwrap();
        assert!(
            (m.difference - (850.0 / 500.0 - 500.0 / 490.0)).abs() < 1e-12,
            "{m:?}"
        );
        assert!(
            (m.incremental - (850.0 - 500.0 * 500.0 / 490.0)).abs() < 1e-9,
            "{m:?}"
        );
        assert!(m.ci_low < m.difference && m.difference < m.ci_high);
        let csv = uplift_csv(&r);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4, "{csv}");
        assert!(lines[3].starts_with("email,control,"), "{csv}");
        assert_eq!(lines[0].split(',').count(), lines[3].split(',').count());
        assert_eq!(lines[0].split(',').count(), lines[1].split(',').count());
    }

    /// Several treated groups: together as the treatment, and each apart, against the control.
    #[test]
    fn several_treated_groups_are_compared_together_and_apart() {
        let mut rows = customers("control", 200, 20, 10.0);
        rows.extend(customers("b", 200, 40, 10.0));
        rows.extend(customers("a", 200, 30, 10.0));
        let r = of_customers(rows, "control");
        let names: Vec<&str> = r.groups.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(names, ["treatment", "a", "b", "control"]);
        assert_eq!((r.groups[0].entered, r.groups[0].converted), (400, 70));
        let against: Vec<(&str, &str)> = r
            .comparisons
            .iter()
            .map(|v| (v.group.as_str(), v.against.as_str()))
            .collect();
        assert_eq!(
            against,
            [("treatment", "control"), ("a", "control"), ("b", "control")]
        );
    }

    #[test]
    fn files_are_read_or_refused_with_the_line() {
        let rows = parse_customers("Group;Converted;Revenue\nA;1;12.5\ncontrol;false;0\n").unwrap();
        assert_eq!(
            rows,
            [
                ("A".to_string(), true, 12.5),
                ("control".to_string(), false, 0.0)
            ]
        );
        let rows = parse_customers("group,converted\nA,true\n").unwrap();
        assert_eq!(rows, [("A".to_string(), true, 0.0)]);
        for (text, line, says) in [
            ("", 1, "empty"),
            ("customer,bought\n", 1, "header"),
            ("group,converted\nA,yes\n", 2, "converted is 1 or 0"),
            ("group,converted,revenue\nA,1\n", 2, "fields"),
            ("group,converted,revenue\nA,1,-4\n", 2, "not below zero"),
            ("group,converted\n,1\n", 2, "empty"),
        ] {
            let e = parse_customers(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(says), "{text:?}: {e}");
        }
    }
}
