//! Customer lifetime value (groundwork for measurement): the BG/NBD model of repeat purchases
//! (Fader, Hardie & Lee 2005) and the Gamma-Gamma model of spend per purchase, fitted by
//! maximum likelihood, with the conventions of the `lifetimes` package: per customer, the
//! number of **repeat** purchases `x` (frequency), the time of the last one since the first
//! `t_x` (recency), the time since the first `T`, and the mean value `zbar` of the repeat
//! purchases.

use crate::table::{self, ParseError, Separator};

/// One customer's purchase summary, in one time unit (weeks for CDNOW).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub x: f64,
    pub t_x: f64,
    pub t: f64,
}

/// ln Γ(z) for z > 0 (Lanczos, g = 7, n = 9: about 15 significant digits).
pub fn ln_gamma(z: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if z < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * z).sin()).ln() - ln_gamma(1.0 - z);
    }
    let z = z - 1.0;
    let mut a = G[0];
    let t = z + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (z + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (z + 0.5) * t.ln() - t + a.ln()
}

/// The Gauss hypergeometric function ₂F₁(a, b; c; z) for |z| < 1, by its series.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for n in 0..100_000 {
        let n = n as f64;
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if term.abs() <= 1e-16 * sum.abs() {
            break;
        }
    }
    sum
}

/// BG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl BgNbd {
    /// One customer's log-likelihood.
    pub fn log_likelihood(&self, s: &Summary) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let Summary { x, t_x, t } = *s;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + t).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x).ln();
            // ln(e^a3 + e^a4) without overflow.
            let m = a3.max(a4);
            a1 + a2 + m + ((a3 - m).exp() + (a4 - m).exp()).ln()
        } else {
            a1 + a2 + a3
        }
    }

    /// The sum over customers.
    pub fn total_log_likelihood(&self, customers: &[Summary]) -> f64 {
        customers.iter().map(|s| self.log_likelihood(s)).sum()
    }

    /// Fits by maximum likelihood (Nelder–Mead on the logarithms of the parameters, so they
    /// stay positive).
    pub fn fit(customers: &[Summary]) -> (BgNbd, f64) {
        let nll = |p: &[f64]| {
            let m = BgNbd {
                r: p[0].exp(),
                alpha: p[1].exp(),
                a: p[2].exp(),
                b: p[3].exp(),
            };
            let ll = m.total_log_likelihood(customers);
            if ll.is_finite() {
                -ll
            } else {
                f64::INFINITY
            }
        };
        let best = nelder_mead(&nll, &[0.0, 0.0, 0.0, 0.0]);
        let m = BgNbd {
            r: best[0].exp(),
            alpha: best[1].exp(),
            a: best[2].exp(),
            b: best[3].exp(),
        };
        (m, m.total_log_likelihood(customers))
    }

    /// The probability that the customer is still active.
    pub fn p_alive(&self, s: &Summary) -> f64 {
        if s.x == 0.0 {
            return 1.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        1.0 / (1.0 + a / (b + s.x - 1.0) * ((alpha + s.t) / (alpha + s.t_x)).powf(r + s.x))
    }

    /// The purchases expected in the next `horizon` time units.
    pub fn expected_purchases(&self, s: &Summary, horizon: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let Summary { x, t_x, t } = *s;
        let z = horizon / (alpha + t + horizon);
        let head = (a + b + x - 1.0) / (a - 1.0);
        let f = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let body = 1.0 - ((alpha + t) / (alpha + t + horizon)).powf(r + x) * f;
        let tail = if x > 0.0 {
            1.0 + a / (b + x - 1.0) * ((alpha + t) / (alpha + t_x)).powf(r + x)
        } else {
            1.0
        };
        head * body / tail
    }
}

/// Gamma-Gamma parameters of spend per purchase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

impl GammaGamma {
    /// One customer's log-likelihood, from her repeat purchases `x` (> 0) and their mean
    /// value `zbar`.
    pub fn log_likelihood(&self, x: f64, zbar: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * gamma.ln()
            + (p * x - 1.0) * zbar.ln()
            + p * x * x.ln()
            - (p * x + q) * (x * zbar + gamma).ln()
    }

    /// Fits on the customers with repeat purchases: `(x, zbar)`.
    pub fn fit(customers: &[(f64, f64)]) -> (GammaGamma, f64) {
        let with: Vec<(f64, f64)> = customers
            .iter()
            .copied()
            .filter(|(x, z)| *x > 0.0 && *z > 0.0)
            .collect();
        let ll = |m: &GammaGamma| {
            with.iter()
                .map(|(x, z)| m.log_likelihood(*x, *z))
                .sum::<f64>()
        };
        let nll = |p: &[f64]| {
            let v = ll(&GammaGamma {
                p: p[0].exp(),
                q: p[1].exp(),
                gamma: p[2].exp(),
            });
            if v.is_finite() {
                -v
            } else {
                f64::INFINITY
            }
        };
        let best = nelder_mead(&nll, &[0.0, 0.0, 0.0]);
        let m = GammaGamma {
            p: best[0].exp(),
            q: best[1].exp(),
            gamma: best[2].exp(),
        };
        (m, ll(&m))
    }

    /// The expected value of a purchase of a customer with `x` repeat purchases of mean
    /// `zbar` (the population mean `p γ / (q − 1)` for a customer without any).
    pub fn expected_spend(&self, x: f64, zbar: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        (gamma + x * zbar) * p / (p * x + q - 1.0)
    }
}

/// Pareto/NBD parameters (Schmittlein, Morrison & Colombo 1987): purchases at a gamma(r, α)
/// rate while alive, lifetimes exponential with a gamma(s, β) rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParetoNbd {
    pub r: f64,
    pub alpha: f64,
    pub s: f64,
    pub beta: f64,
}

impl ParetoNbd {
    /// ln A₀ of Fader, Hardie & Lee's note on the Pareto/NBD likelihood: the integral over
    /// the death time between the last purchase and `T`, through ₂F₁ taken on the side that
    /// keeps its argument in [0, 1).
    fn ln_a0(&self, s: &Summary) -> f64 {
        let ParetoNbd {
            r,
            alpha,
            s: s_,
            beta,
        } = *self;
        let Summary { x, t_x, t } = *s;
        let (low, high, second) = if alpha < beta {
            (alpha, beta, r + x)
        } else {
            (beta, alpha, s_ + 1.0)
        };
        let rsx = r + s_ + x;
        let gap = high - low;
        let q1 = high + t_x;
        let q2 = high + t;
        let p1 = hyp2f1(rsx, second, rsx + 1.0, gap / q1);
        let p2 = hyp2f1(rsx, second, rsx + 1.0, gap / q2);
        // ln(p1 / q1^rsx − p2 / q2^rsx), the second term factored out of the first.
        let l1 = p1.ln() - rsx * q1.ln();
        let l2 = p2.ln() - rsx * q2.ln();
        l1 + (-(l2 - l1).exp()).ln_1p()
    }

    /// One customer's log-likelihood.
    pub fn log_likelihood(&self, s: &Summary) -> f64 {
        let ParetoNbd {
            r,
            alpha,
            s: s_,
            beta,
        } = *self;
        let Summary { x, t, .. } = *s;
        let head = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + s_ * beta.ln();
        let alive = -(r + x) * (alpha + t).ln() - s_ * (beta + t).ln();
        let died = s_.ln() + self.ln_a0(s) - (r + s_ + x).ln();
        head + ln_add_exp(alive, died)
    }

    /// The sum over customers.
    pub fn total_log_likelihood(&self, customers: &[Summary]) -> f64 {
        customers.iter().map(|s| self.log_likelihood(s)).sum()
    }

    /// Fits by maximum likelihood, as [`BgNbd::fit`] does.
    pub fn fit(customers: &[Summary]) -> (ParetoNbd, f64) {
        let model = |p: &[f64]| ParetoNbd {
            r: p[0].exp(),
            alpha: p[1].exp(),
            s: p[2].exp(),
            beta: p[3].exp(),
        };
        let nll = |p: &[f64]| {
            let ll = model(p).total_log_likelihood(customers);
            if ll.is_finite() {
                -ll
            } else {
                f64::INFINITY
            }
        };
        let m = model(&nelder_mead(&nll, &[0.0, 0.0, 0.0, 0.0]));
        (m, m.total_log_likelihood(customers))
    }

    /// The probability that the customer is still active.
    pub fn p_alive(&self, s: &Summary) -> f64 {
        let ParetoNbd {
            r,
            alpha,
            s: s_,
            beta,
        } = *self;
        let Summary { x, t, .. } = *s;
        let e = s_.ln() - (r + s_ + x).ln()
            + (r + x) * (alpha + t).ln()
            + s_ * (beta + t).ln()
            + self.ln_a0(s);
        1.0 / (1.0 + e.exp())
    }

    /// The purchases expected in the next `horizon` time units.
    pub fn expected_purchases(&self, s: &Summary, horizon: f64) -> f64 {
        let ParetoNbd {
            r,
            alpha,
            s: s_,
            beta,
        } = *self;
        let Summary { x, t, .. } = *s;
        // P(alive) times the purchases of a live customer over the horizon, which dies on
        // the way at the posterior rate.
        let rate = (r + x) * (beta + t) / ((alpha + t) * (s_ - 1.0));
        let survives = 1.0 - ((beta + t) / (beta + t + horizon)).powf(s_ - 1.0);
        self.p_alive(s) * rate * survives
    }
}

/// ln(eᵃ + eᵇ) without overflow.
fn ln_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// One purchase of a transaction log: the day is counted from 1970-01-01.
#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    pub customer: String,
    pub day: i64,
    pub amount: f64,
}

/// A customer's summary with the mean value of her repeat purchases.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSummary {
    pub customer: String,
    pub summary: Summary,
    /// The mean of her repeat purchase days' totals (0 without a repeat purchase).
    pub monetary: f64,
}

/// Summarises a transaction log as `lifetimes` does, at day granularity: a customer's
/// purchases on one day are one purchase (their amounts summed); `x` counts the days after
/// her first with a purchase, `t_x` and `T` run from her first day to her last and to
/// `end_day`, in units of `unit_days` days (1 for days, 7 for weeks); purchases after
/// `end_day` are left out. Customers come out in the order of their ids.
pub fn summarise(purchases: &[Purchase], end_day: i64, unit_days: f64) -> Vec<CustomerSummary> {
    let mut days: std::collections::BTreeMap<&str, std::collections::BTreeMap<i64, f64>> =
        Default::default();
    for p in purchases.iter().filter(|p| p.day <= end_day) {
        *days
            .entry(p.customer.as_str())
            .or_default()
            .entry(p.day)
            .or_default() += p.amount;
    }
    days.into_iter()
        .filter_map(|(customer, by_day)| {
            let (&first, _) = by_day.first_key_value()?;
            let (&last, _) = by_day.last_key_value()?;
            let repeats: Vec<f64> = by_day.values().skip(1).copied().collect();
            let monetary = if repeats.is_empty() {
                0.0
            } else {
                repeats.iter().sum::<f64>() / repeats.len() as f64
            };
            Some(CustomerSummary {
                customer: customer.to_string(),
                summary: Summary {
                    x: repeats.len() as f64,
                    t_x: (last - first) as f64 / unit_days,
                    t: (end_day - first) as f64 / unit_days,
                },
                monetary,
            })
        })
        .collect()
}

/// Discounted lifetime value over `months` months, as `lifetimes` computes it: each month's
/// expected purchases (the difference of the cumulative expectation at its end and start,
/// `periods_per_month` time units a month) times the expected spend per purchase, discounted
/// by `(1 + monthly_rate)^month`.
pub fn discounted_value(
    expected_by: &dyn Fn(f64) -> f64,
    spend: f64,
    months: u32,
    periods_per_month: f64,
    monthly_rate: f64,
) -> f64 {
    let mut value = 0.0;
    let mut before = 0.0;
    for month in 1..=months {
        let cumulative = expected_by(month as f64 * periods_per_month);
        value += (cumulative - before) * spend / (1.0 + monthly_rate).powi(month as i32);
        before = cumulative;
    }
    value
}

/// What `parcours report clv` reads: a transaction log, or summaries already made.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Purchases(Vec<Purchase>),
    Summaries(Vec<CustomerSummary>),
}

const CUSTOMER: [&str; 5] = ["customer_id", "customer", "id", "user_id", "userid"];
const DATE: [&str; 6] = ["date", "day", "timestamp", "order_date", "ordered_at", "at"];
const AMOUNT: [&str; 8] = [
    "amount",
    "value",
    "revenue",
    "total",
    "dollar_value",
    "monetary_value",
    "price",
    "sales",
];

/// Reads a transaction log (customer id, date, amount: with a header naming them, or without
/// a header as `id date … amount`, the amount last, as CDNOW's master file is) or the summary
/// columns of `lifetimes` (`frequency,recency,T[,monetary_value]`, or Hardie's
/// `x,t_x,T[,zbar]`, with an id column when there is one).
pub fn parse_input(text: &str) -> Result<Input, ParseError> {
    let mut lines = table::lines(text).peekable();
    let Some(&(_, first)) = lines.peek() else {
        return Err(ParseError {
            line: 1,
            message: "the file is empty".into(),
        });
    };
    let sep = Separator::of(first);
    let names: Vec<String> = sep.split(first).iter().map(|n| n.to_lowercase()).collect();
    let at = |wanted: &[&str]| names.iter().position(|n| wanted.contains(&n.as_str()));
    let id_at = at(&CUSTOMER);
    let short = |line: usize, fields: usize| ParseError {
        line,
        message: format!("{fields} fields where {} were expected", names.len().max(2)),
    };
    // Summaries.
    for (x, t_x, t, m) in [
        ("frequency", "recency", "t", "monetary_value"),
        ("x", "t_x", "t", "zbar"),
    ] {
        let (Some(x_at), Some(t_x_at), Some(t_at)) = (at(&[x]), at(&[t_x]), at(&[t])) else {
            continue;
        };
        let m_at = at(&[m]);
        lines.next();
        let mut out = Vec::new();
        for (line, text) in lines {
            let f = sep.split(text);
            let get = |i: usize, what: &str| {
                let v = f.get(i).ok_or_else(|| short(line, f.len()))?;
                table::amount(v, what, line)
            };
            let summary = Summary {
                x: get(x_at, x)?,
                t_x: get(t_x_at, t_x)?,
                t: get(t_at, "T")?,
            };
            if summary.x.fract() != 0.0 || summary.t_x > summary.t {
                return Err(ParseError {
                    line,
                    message: format!(
                        "{x} must be a whole number and {t_x} at most T (got {}, {} and {})",
                        summary.x, summary.t_x, summary.t
                    ),
                });
            }
            out.push(CustomerSummary {
                customer: match id_at {
                    Some(i) => f.get(i).ok_or_else(|| short(line, f.len()))?.to_string(),
                    None => (out.len() + 1).to_string(),
                },
                summary,
                monetary: match m_at {
                    Some(i) => get(i, m)?,
                    None => 0.0,
                },
            });
        }
        return Ok(Input::Summaries(out));
    }
    // A transaction log: a header unless its first line already reads as a purchase.
    let fields = sep.split(first);
    let headerless = fields.len() >= 3 && table::day(fields[1], 1).is_ok();
    let (id_at, date_at, amount_at) = if headerless {
        (0, 1, None)
    } else {
        lines.next();
        match (id_at, at(&DATE), at(&AMOUNT)) {
            (Some(i), Some(d), Some(a)) => (i, d, Some(a)),
            _ => {
                return Err(ParseError {
                    line: 1,
                    message: format!(
                        "the header names {names:?}: a transaction log needs a customer id \
                         ({CUSTOMER:?}), a date ({DATE:?}) and an amount ({AMOUNT:?}); \
                         summaries need frequency, recency and T"
                    ),
                })
            }
        }
    };
    let mut out = Vec::new();
    for (line, text) in lines {
        let f = sep.split(text);
        let amount_at = amount_at.unwrap_or(f.len().saturating_sub(1));
        if f.len() < 3 || [id_at, date_at, amount_at].iter().any(|&i| i >= f.len()) {
            return Err(short(line, f.len()));
        }
        if f[id_at].is_empty() {
            return Err(ParseError {
                line,
                message: "the customer id is empty".into(),
            });
        }
        out.push(Purchase {
            customer: f[id_at].to_string(),
            day: table::day(f[date_at], line)?,
            amount: table::amount(f[amount_at], "the amount", line)?,
        });
    }
    Ok(Input::Purchases(out))
}

/// Minimises `f` from `start` by Nelder–Mead (reflection 1, expansion 2, contraction ½,
/// shrink ½), restarted from its best point until a restart no longer improves it.
pub fn nelder_mead(f: &dyn Fn(&[f64]) -> f64, start: &[f64]) -> Vec<f64> {
    let mut best = start.to_vec();
    let mut best_value = f(&best);
    for _ in 0..20 {
        let (x, v) = nelder_mead_once(f, &best);
        let improved = best_value - v;
        best = x;
        best_value = v;
        if improved.abs() <= 1e-12 * best_value.abs().max(1.0) {
            break;
        }
    }
    best
}

fn nelder_mead_once(f: &dyn Fn(&[f64]) -> f64, start: &[f64]) -> (Vec<f64>, f64) {
    let n = start.len();
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    simplex.push((start.to_vec(), f(start)));
    for i in 0..n {
        let mut p = start.to_vec();
        p[i] += if p[i].abs() > 1e-3 {
            0.1 * p[i].abs()
        } else {
            0.25
        };
        let v = f(&p);
        simplex.push((p, v));
    }
    for _ in 0..50_000 {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let spread = simplex[n].1 - simplex[0].1;
        let size = simplex[1..]
            .iter()
            .map(|(p, _)| {
                p.iter()
                    .zip(&simplex[0].0)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max)
            })
            .fold(0.0, f64::max);
        if spread.abs() <= 1e-13 * simplex[0].1.abs().max(1.0) && size <= 1e-10 {
            break;
        }
        let centroid: Vec<f64> = (0..n)
            .map(|j| simplex[..n].iter().map(|(p, _)| p[j]).sum::<f64>() / n as f64)
            .collect();
        let along = |t: f64| -> Vec<f64> {
            centroid
                .iter()
                .zip(&simplex[n].0)
                .map(|(c, w)| c + t * (w - c))
                .collect()
        };
        let reflected = along(-1.0);
        let fr = f(&reflected);
        if fr < simplex[0].1 {
            let expanded = along(-2.0);
            let fe = f(&expanded);
            simplex[n] = if fe < fr {
                (expanded, fe)
            } else {
                (reflected, fr)
            };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (reflected, fr);
        } else {
            let contracted = if fr < simplex[n].1 {
                along(-0.5)
            } else {
                along(0.5)
            };
            let fc = f(&contracted);
            if fc < simplex[n].1.min(fr) {
                simplex[n] = (contracted, fc);
            } else {
                let best = simplex[0].0.clone();
                for point in simplex.iter_mut().skip(1) {
                    let p: Vec<f64> = best
                        .iter()
                        .zip(&point.0)
                        .map(|(b, x)| b + 0.5 * (x - b))
                        .collect();
                    let v = f(&p);
                    *point = (p, v);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAPER: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    #[test]
    fn ln_gamma_and_hyp2f1_match_known_values() {
        assert!((ln_gamma(1.0)).abs() < 1e-13);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        // Python's math.lgamma(100.5).
        assert!((ln_gamma(100.5) - 361.435_540_467_777_6).abs() < 1e-9);
        // ₂F₁(1, 1; 2; z) = −ln(1 − z) / z.
        let z: f64 = 0.3;
        assert!((hyp2f1(1.0, 1.0, 2.0, z) + (1.0 - z).ln() / z).abs() < 1e-14);
    }

    #[test]
    fn the_hardie_excel_customer() {
        let s = Summary {
            x: 2.0,
            t_x: 30.43,
            t: 38.86,
        };
        let e = PAPER.expected_purchases(&s, 39.0);
        assert!((e - 1.226).abs() < 1e-3, "{e}");
        let alive = PAPER.p_alive(&s);
        assert!((alive - 0.7266).abs() < 1e-3, "{alive}");
        assert_eq!(
            PAPER.p_alive(&Summary {
                x: 0.0,
                t_x: 0.0,
                t: 10.0
            }),
            1.0
        );
    }

    #[test]
    fn a_fit_recovers_the_parameters_it_was_simulated_from() {
        // A deterministic population: the paper's parameters' expected summaries are not
        // enough for a fit, so draw customers with a fixed generator.
        let mut seed = 42u64;
        let mut uniform = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let gamma = |shape: f64, scale: f64, u: &mut dyn FnMut() -> f64| {
            // Marsaglia–Tsang, with the boost for shape < 1.
            let (k, boost) = if shape < 1.0 {
                (shape + 1.0, u().powf(1.0 / shape))
            } else {
                (shape, 1.0)
            };
            let d = k - 1.0 / 3.0;
            let c = 1.0 / (9.0 * d).sqrt();
            loop {
                // A standard normal by Box–Muller.
                let z = (-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos();
                let v = (1.0 + c * z).powi(3);
                if v > 0.0 && u().ln() < 0.5 * z * z + d - d * v + d * v.ln() {
                    return d * v * boost * scale;
                }
            }
        };
        let truth = BgNbd {
            r: 0.8,
            alpha: 3.0,
            a: 1.2,
            b: 3.5,
        };
        let mut customers = Vec::new();
        for _ in 0..4_000 {
            let lambda = gamma(truth.r, 1.0 / truth.alpha, &mut uniform);
            let g1 = gamma(truth.a, 1.0, &mut uniform);
            let g2 = gamma(truth.b, 1.0, &mut uniform);
            let p = g1 / (g1 + g2);
            let t = 40.0;
            let (mut now, mut x, mut t_x) = (0.0, 0.0, 0.0);
            loop {
                now += -uniform().ln() / lambda;
                if now > t {
                    break;
                }
                x += 1.0;
                t_x = now;
                if uniform() < p {
                    break;
                }
            }
            customers.push(Summary { x, t_x, t });
        }
        let (fit, ll) = BgNbd::fit(&customers);
        assert!(
            ll >= truth.total_log_likelihood(&customers) - 1e-6,
            "{fit:?}"
        );
        for (got, want) in [
            (fit.r, truth.r),
            (fit.alpha, truth.alpha),
            (fit.a, truth.a),
            (fit.b, truth.b),
        ] {
            assert!((got / want - 1.0).abs() < 0.25, "{fit:?} against {truth:?}");
        }
    }

    #[test]
    fn pareto_nbd_death_term_is_its_integral() {
        // A₀ / (r + s + x) = ∫ from t_x to T of (α + τ)^−(r+x) (β + τ)^−(s+1) dτ, on both
        // sides of α = β (the ₂F₁ is taken on the side that keeps it convergent).
        for m in [
            ParetoNbd {
                r: 0.55,
                alpha: 10.58,
                s: 0.61,
                beta: 11.67,
            },
            ParetoNbd {
                r: 1.3,
                alpha: 14.0,
                s: 0.4,
                beta: 6.0,
            },
        ] {
            let c = Summary {
                x: 3.0,
                t_x: 12.5,
                t: 38.0,
            };
            let f =
                |tau: f64| (m.alpha + tau).powf(-(m.r + c.x)) * (m.beta + tau).powf(-(m.s + 1.0));
            // Simpson's rule, 2,000 intervals.
            let n = 2_000;
            let h = (c.t - c.t_x) / n as f64;
            let mut sum = f(c.t_x) + f(c.t);
            for i in 1..n {
                sum += f(c.t_x + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
            }
            let integral = sum * h / 3.0;
            let closed = (m.ln_a0(&c) - (m.r + m.s + c.x).ln()).exp();
            assert!(
                (closed / integral - 1.0).abs() < 1e-9,
                "{closed} against {integral}"
            );
        }
    }

    #[test]
    fn pareto_nbd_expectations_behave() {
        let m = ParetoNbd {
            r: 0.553,
            alpha: 10.578,
            s: 0.606,
            beta: 11.669,
        };
        let recent = Summary {
            x: 4.0,
            t_x: 37.0,
            t: 38.0,
        };
        let lapsed = Summary {
            x: 4.0,
            t_x: 5.0,
            t: 38.0,
        };
        let (a, b) = (m.p_alive(&recent), m.p_alive(&lapsed));
        assert!(0.0 < b && b < a && a < 1.0, "{a} {b}");
        assert_eq!(m.expected_purchases(&recent, 0.0), 0.0);
        assert!(m.expected_purchases(&recent, 52.0) > m.expected_purchases(&lapsed, 52.0));
        assert!(m.expected_purchases(&recent, 52.0) > m.expected_purchases(&recent, 26.0));
    }

    #[test]
    fn a_transaction_log_is_summarised_as_lifetimes_does() {
        let buy = |customer: &str, day: i64, amount: f64| Purchase {
            customer: customer.into(),
            day,
            amount,
        };
        let log = [
            buy("b", 10, 5.0),
            buy("a", 0, 10.0),
            buy("a", 7, 20.0),
            buy("a", 7, 10.0),
            buy("a", 21, 60.0),
            buy("a", 99, 1_000.0),
        ];
        let got = summarise(&log, 28, 7.0);
        assert_eq!(got.len(), 2);
        // Two purchases on day 7 are one of 30; the one after the end is left out.
        assert_eq!(got[0].customer, "a");
        assert_eq!(
            got[0].summary,
            Summary {
                x: 2.0,
                t_x: 3.0,
                t: 4.0
            }
        );
        assert_eq!(got[0].monetary, 45.0);
        assert_eq!(
            got[1].summary,
            Summary {
                x: 0.0,
                t_x: 0.0,
                t: 18.0 / 7.0
            }
        );
        assert_eq!(got[1].monetary, 0.0);
    }

    #[test]
    fn discounted_value_discounts_each_month() {
        // One purchase a month of 100, 1 % a month: 100/1.01 + 100/1.01².
        let v = discounted_value(&|t| t, 100.0, 2, 1.0, 0.01);
        assert!((v - (100.0 / 1.01 + 100.0 / 1.0201)).abs() < 1e-9, "{v}");
    }

    #[test]
    fn gamma_gamma_expected_spend() {
        let m = GammaGamma {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        // The population mean for a customer without repeat purchases.
        assert!((m.expected_spend(0.0, 0.0) - 6.25 * 15.44 / 2.74).abs() < 1e-12);
        // More repeat purchases pull the estimate towards her own mean.
        assert!((m.expected_spend(50.0, 10.0) - 10.0).abs() < 1.0);
    }
}
