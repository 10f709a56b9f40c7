//! `parcours report …` on files, so an analyst can check Parcours against another tool:
//! attribution over ChannelAttribution's path format, lifetime value over a transaction log
//! or `lifetimes` summaries. Results go to stdout as CSV; what was read and fitted goes to
//! stderr.

use parcours_engine::clock::Moment;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use parcours_core::attribution::{self, Credits};
use parcours_core::clv::{self, BgNbd, CustomerSummary, GammaGamma, Input, ParetoNbd, Summary};

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `parcours report attribution --paths FILE`.
pub struct AttributionReport {
    pub paths: PathBuf,
    /// The Markov chain's order (1 or more).
    pub order: usize,
    /// Leave the paths' nulls out of the Markov chain.
    pub no_nulls: bool,
}

/// Every model's credits per channel, one CSV line a channel.
pub fn attribution(r: &AttributionReport, out: &mut dyn Write) -> anyhow::Result<()> {
    if r.order == 0 || r.order > 8 {
        bail!("--order must be between 1 and 8, not {}", r.order);
    }
    let started = Moment::now();
    let paths = attribution::parse_paths(&read(&r.paths)?)
        .with_context(|| format!("reading {}", r.paths.display()))?;
    let conversions: f64 = paths.iter().map(|p| p.conversions).sum();
    let value: f64 = paths.iter().map(|p| p.value).sum();
    eprintln!(
        "{} paths, {conversions} conversions, {value} of value, read in {:.2} s",
        paths.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "solving every model; the Markov chain of order {} {} null paths…",
        r.order,
        if r.no_nulls { "without" } else { "with" }
    );
    // The paths of a file carry no times: no time decay.
    let every = attribution::every_model(&paths, r.order, !r.no_nulls, false);
    let markov = &every.markov;
    eprintln!(
        "Markov: {} states, P(conversion) {:.6}; done in {:.2} s",
        markov.states,
        markov.conversion_probability,
        started.elapsed().as_secs_f64()
    );
    if !markov.settled {
        bail!(
            "the Markov chain ({} states) did not settle within its budget of {} edge visits: \
             its walks take too long to end (a path of {} touches is the longest here); \
             shorten the paths or lower --order",
            markov.states,
            attribution::SWEEP_BUDGET,
            paths.iter().map(|p| p.channels.len()).max().unwrap_or(0)
        );
    }
    let models = &every.models;
    let mut header = vec!["channel".to_string()];
    header.extend(models.iter().map(|(n, _)| format!("{n}_conversions")));
    header.extend(models.iter().map(|(n, _)| format!("{n}_value")));
    header.push("markov_removal_effect".into());
    writeln!(out, "{}", header.join(","))?;
    let channels: std::collections::BTreeSet<&String> =
        models.iter().flat_map(|(_, c)| c.keys()).collect();
    for channel in channels {
        let mut line = vec![csv_field(channel)];
        let credit = |c: &Credits| c.get(channel).copied().unwrap_or_default();
        line.extend(
            models
                .iter()
                .map(|(_, c)| format!("{:.6}", credit(c).conversions)),
        );
        line.extend(
            models
                .iter()
                .map(|(_, c)| format!("{:.6}", credit(c).value)),
        );
        line.push(format!(
            "{:.6}",
            markov.removal_effects.get(channel).copied().unwrap_or(0.0)
        ));
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

/// `parcours report uplift --customers FILE`: every treated group against the control group.
pub fn uplift(customers: &PathBuf, control: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    use parcours_service::measure::uplift;
    let rows = uplift::parse_customers(&read(customers)?)
        .with_context(|| format!("reading {}", customers.display()))?;
    if !rows.iter().any(|(g, _, _)| g == control) {
        bail!("no customer is in the control group {control:?} (name it with --control)");
    }
    if rows.iter().all(|(g, _, _)| g == control) {
        bail!("every customer is in the control group {control:?}: nothing to compare");
    }
    let report = uplift::of_customers(rows, control);
    for g in &report.groups {
        eprintln!(
            "{}: {} customers, {} converted, {} of revenue",
            g.group, g.entered, g.converted, g.revenue
        );
    }
    out.write_all(uplift::uplift_csv(&report).as_bytes())?;
    Ok(())
}

/// A field as CSV writes it: quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The repeat-purchase model `report clv` fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    BgNbd,
    ParetoNbd,
}

/// `parcours report clv --transactions FILE`.
pub struct ClvReport {
    pub transactions: PathBuf,
    pub model: Model,
    /// The time unit of recency and T: 1 (days) or 7 (weeks).
    pub unit_days: f64,
    /// The end of the observation (default: the last purchase's day).
    pub end: Option<String>,
    /// Expected purchases over this many units.
    pub horizon: f64,
    /// Lifetime value over this many months.
    pub months: u32,
    /// Monthly discount rate.
    pub discount: f64,
}

enum Fitted {
    BgNbd(BgNbd),
    ParetoNbd(ParetoNbd),
}

impl Fitted {
    fn p_alive(&self, s: &Summary) -> f64 {
        match self {
            Fitted::BgNbd(m) => m.p_alive(s),
            Fitted::ParetoNbd(m) => m.p_alive(s),
        }
    }

    fn expected(&self, s: &Summary, t: f64) -> f64 {
        match self {
            Fitted::BgNbd(m) => m.expected_purchases(s, t),
            Fitted::ParetoNbd(m) => m.expected_purchases(s, t),
        }
    }
}

/// Fits the model and Gamma-Gamma, then one CSV line a customer.
pub fn clv(r: &ClvReport, out: &mut dyn Write) -> anyhow::Result<()> {
    if !(r.horizon.is_finite() && r.horizon >= 0.0) {
        bail!("--horizon must be a number of time units, not below zero");
    }
    if !(r.discount.is_finite() && r.discount > -1.0) {
        bail!("--discount is a monthly rate such as 0.01");
    }
    let started = Moment::now();
    let customers: Vec<CustomerSummary> = match clv::parse_input(&read(&r.transactions)?)
        .with_context(|| format!("reading {}", r.transactions.display()))?
    {
        Input::Summaries(s) => {
            if r.end.is_some() {
                bail!("--end applies to a transaction log; this file holds summaries");
            }
            eprintln!("{} customer summaries", s.len());
            s
        }
        Input::Purchases(log) => {
            let end = match &r.end {
                Some(d) => parcours_core::table::day(d, 0)
                    .map_err(|_| anyhow::anyhow!("--end {d:?} is not a date (2026-12-01)"))?,
                None => log.iter().map(|p| p.day).max().unwrap_or(0),
            };
            let s = clv::summarise(&log, end, r.unit_days);
            eprintln!(
                "{} purchases of {} customers, observed to {}",
                log.len(),
                s.len(),
                parcours_core::table::format_day(end)
            );
            s
        }
    };
    if customers.is_empty() {
        bail!("no customers to fit");
    }
    if !customers.iter().any(|c| c.summary.x > 0.0) || !customers.iter().any(|c| c.summary.t > 0.0)
    {
        bail!(
            "the models cannot be fitted: no customer bought again, or none was observed for \
             any time after her first purchase (give --end after the purchases)"
        );
    }
    let summaries: Vec<Summary> = customers.iter().map(|c| c.summary).collect();
    let fitted = match r.model {
        Model::BgNbd => {
            eprintln!("fitting BG/NBD…");
            let (m, ll) = BgNbd::fit(&summaries);
            eprintln!(
                "BG/NBD: r {:.6}, alpha {:.6}, a {:.6}, b {:.6}, log-likelihood {ll:.4} ({:.2} s)",
                m.r,
                m.alpha,
                m.a,
                m.b,
                started.elapsed().as_secs_f64()
            );
            if ![m.r, m.alpha, m.a, m.b, ll].iter().all(|v| v.is_finite()) {
                bail!("the BG/NBD fit did not converge on these customers");
            }
            Fitted::BgNbd(m)
        }
        Model::ParetoNbd => {
            eprintln!("fitting Pareto/NBD…");
            let (m, ll) = ParetoNbd::fit(&summaries);
            eprintln!(
                "Pareto/NBD: r {:.6}, alpha {:.6}, s {:.6}, beta {:.6}, log-likelihood {ll:.4} ({:.2} s)",
                m.r,
                m.alpha,
                m.s,
                m.beta,
                started.elapsed().as_secs_f64()
            );
            if ![m.r, m.alpha, m.s, m.beta, ll]
                .iter()
                .all(|v| v.is_finite())
            {
                bail!("the Pareto/NBD fit did not converge on these customers");
            }
            Fitted::ParetoNbd(m)
        }
    };
    let spenders: Vec<(f64, f64)> = customers
        .iter()
        .map(|c| (c.summary.x, c.monetary))
        .filter(|(x, m)| *x > 0.0 && *m > 0.0)
        .collect();
    let spend = if spenders.len() >= 3 {
        let (g, ll) = GammaGamma::fit(&spenders);
        eprintln!(
            "Gamma-Gamma on {} customers with repeat purchases: p {:.6}, q {:.6}, gamma {:.6}, log-likelihood {ll:.4} ({:.2} s)",
            spenders.len(),
            g.p,
            g.q,
            g.gamma,
            started.elapsed().as_secs_f64()
        );
        Some(g)
    } else {
        eprintln!(
            "only {} customers with repeat purchases of some value: no Gamma-Gamma fit, so no spend or lifetime value",
            spenders.len()
        );
        None
    };
    // The months of `lifetimes`: 4.345 weeks, 30 days.
    let per_month = if r.unit_days == 7.0 {
        4.345
    } else {
        30.0 / r.unit_days
    };
    writeln!(
        out,
        "customer,frequency,recency,T,monetary_value,p_alive,expected_purchases,expected_spend,clv"
    )?;
    for c in &customers {
        let s = &c.summary;
        let expected = fitted.expected(s, r.horizon);
        let (spend_text, value_text) = match &spend {
            Some(g) => {
                let e = g.expected_spend(s.x, c.monetary);
                let v = clv::discounted_value(
                    &|t| fitted.expected(s, t),
                    e,
                    r.months,
                    per_month,
                    r.discount,
                );
                (format!("{e:.6}"), format!("{v:.6}"))
            }
            None => (String::new(), String::new()),
        };
        writeln!(
            out,
            "{},{},{},{},{},{:.6},{:.6},{},{}",
            csv_field(&c.customer),
            s.x,
            s.t_x,
            s.t,
            c.monetary,
            fitted.p_alive(s),
            expected,
            spend_text,
            value_text
        )?;
    }
    Ok(())
}
