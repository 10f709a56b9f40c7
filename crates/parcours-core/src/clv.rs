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

    /// Fits by maximum likelihood over the logarithms of the parameters (so they stay
    /// positive): BFGS on the exact gradient when every repeat count is whole, Nelder–Mead
    /// otherwise or when BFGS does not converge.
    pub fn fit(customers: &[Summary]) -> (BgNbd, f64) {
        let model = |p: &[f64]| BgNbd {
            r: p[0].exp(),
            alpha: p[1].exp(),
            a: p[2].exp(),
            b: p[3].exp(),
        };
        let start = [0.0; 4];
        let best = match BgNbdData::new(customers) {
            // Whole repeat counts: quasi-Newton on the exact gradient, in the logarithms of
            // the parameters (d/dln p = p · d/dp).
            Some(data) => bfgs(
                &|p: &[f64]| {
                    let m = model(p);
                    let (ll, g) = data.log_likelihood(&m);
                    let scale = [m.r, m.alpha, m.a, m.b];
                    (-ll, (0..4).map(|k| -g[k] * scale[k]).collect())
                },
                &start,
            ),
            None => None,
        };
        let best = best.unwrap_or_else(|| {
            let nll = |p: &[f64]| to_minimise(model(p).total_log_likelihood(customers));
            nelder_mead(&nll, &start)
        });
        let m = model(&best);
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
        let data = GammaGammaData::new(&with);
        let ll = |m: &GammaGamma| data.log_likelihood(m);
        let nll = |p: &[f64]| {
            to_minimise(ll(&GammaGamma {
                p: p[0].exp(),
                q: p[1].exp(),
                gamma: p[2].exp(),
            }))
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

/// The customers as the BG/NBD likelihood reads them in a fit: the ln Γ differences of whole
/// repeat counts summed through running tables, customers without repeat purchases merged by
/// `T`, so an evaluation costs a few logarithms per customer with repeat purchases.
struct BgNbdData {
    customers: f64,
    /// Customers by repeat count.
    by_x: Vec<f64>,
    /// Distinct `T`s, and the customers without repeat purchases at each.
    ts: Vec<f64>,
    zero_at_t: Vec<f64>,
    /// Distinct `t_x`s of the customers with repeat purchases.
    txs: Vec<f64>,
    /// Customers with repeat purchases: (x, index of T, index of t_x).
    repeat: Vec<(usize, usize, usize)>,
}

impl BgNbdData {
    /// `None` when a repeat count is not a whole number (or absurdly large): the fit then
    /// reads the customers one by one.
    fn new(customers: &[Summary]) -> Option<BgNbdData> {
        let whole = |x: f64| x >= 0.0 && x.fract() == 0.0 && x <= 1e6;
        if !customers.iter().all(|c| whole(c.x)) {
            return None;
        }
        let max = customers.iter().map(|c| c.x as usize).max().unwrap_or(0);
        let mut by_x = vec![0.0; max + 1];
        let mut ts: Vec<f64> = customers.iter().map(|c| c.t).collect();
        ts.sort_by(f64::total_cmp);
        ts.dedup();
        let mut txs: Vec<f64> = customers
            .iter()
            .filter(|c| c.x > 0.0)
            .map(|c| c.t_x)
            .collect();
        txs.sort_by(f64::total_cmp);
        txs.dedup();
        let mut zero_at_t = vec![0.0; ts.len()];
        let mut repeat = Vec::new();
        for c in customers {
            by_x[c.x as usize] += 1.0;
            let j = ts.partition_point(|t| *t < c.t);
            if c.x == 0.0 {
                zero_at_t[j] += 1.0;
            } else {
                repeat.push((c.x as usize, j, txs.partition_point(|t| *t < c.t_x)));
            }
        }
        Some(BgNbdData {
            customers: customers.len() as f64,
            by_x,
            ts,
            zero_at_t,
            txs,
            repeat,
        })
    }

    /// The sum of the customers' log-likelihoods, as [`BgNbd::total_log_likelihood`], and its
    /// gradient in (r, α, a, b).
    fn log_likelihood(&self, m: &BgNbd) -> (f64, [f64; 4]) {
        let BgNbd { r, alpha, a, b } = *m;
        // Σ over customers of ln Γ(r+x) − ln Γ(r) + ln Γ(b+x) − ln Γ(b) − (ln Γ(a+b+x) −
        // ln Γ(a+b)): each a sum of ln(· + i) for i < x, its derivatives sums of 1/(· + i).
        let mut ln_b_x1 = vec![0.0; self.by_x.len()];
        let (mut running, mut total) = (0.0, 0.0);
        let (mut d_r, mut d_b, mut d_ab) = (0.0, 0.0, 0.0);
        let mut grad = [0.0; 4];
        for (x, n) in self.by_x.iter().enumerate() {
            if x > 0 {
                let i = (x - 1) as f64;
                ln_b_x1[x] = (b + i).ln();
                running += (r + i).ln() + ln_b_x1[x] - (a + b + i).ln();
                d_r += 1.0 / (r + i);
                d_b += 1.0 / (b + i);
                d_ab += 1.0 / (a + b + i);
            }
            total += n * running;
            grad[0] += n * d_r;
            grad[2] -= n * d_ab;
            grad[3] += n * (d_b - d_ab);
        }
        total += self.customers * r * alpha.ln();
        grad[0] += self.customers * alpha.ln();
        grad[1] += self.customers * r / alpha;
        let ln_alpha_t: Vec<f64> = self.ts.iter().map(|t| (alpha + t).ln()).collect();
        for ((n, l), t) in self.zero_at_t.iter().zip(&ln_alpha_t).zip(&self.ts) {
            total -= n * r * l;
            grad[0] -= n * l;
            grad[1] -= n * r / (alpha + t);
        }
        let ln_alpha_tx: Vec<f64> = self.txs.iter().map(|t| (alpha + t).ln()).collect();
        let ln_a = a.ln();
        for &(x, j, k) in &self.repeat {
            let rx = r + x as f64;
            let a3 = -rx * ln_alpha_t[j];
            let a4 = ln_a - ln_b_x1[x] - rx * ln_alpha_tx[k];
            // ln(e^a3 + e^a4), and the weight of each term in its derivatives.
            let (hi, lo) = if a3 > a4 { (a3, a4) } else { (a4, a3) };
            let e = (lo - hi).exp();
            total += hi + e.ln_1p();
            let w_hi = 1.0 / (1.0 + e);
            let (w3, w4) = if a3 > a4 {
                (w_hi, 1.0 - w_hi)
            } else {
                (1.0 - w_hi, w_hi)
            };
            grad[0] -= w3 * ln_alpha_t[j] + w4 * ln_alpha_tx[k];
            grad[1] -= rx * (w3 / (alpha + self.ts[j]) + w4 / (alpha + self.txs[k]));
            grad[2] += w4 / a;
            grad[3] -= w4 / (b + x as f64 - 1.0);
        }
        (total, grad)
    }
}

/// Gamma-Gamma's customers as its likelihood reads them in a fit: the sums that do not depend
/// on the parameters taken once, the ln Γ terms once per distinct repeat count.
struct GammaGammaData {
    /// Distinct repeat counts, and how many customers have each.
    xs: Vec<(f64, f64)>,
    /// (x, x · zbar) per customer.
    rows: Vec<(f64, f64)>,
    sum_x_ln_z: f64,
    sum_ln_z: f64,
    sum_x_ln_x: f64,
}

impl GammaGammaData {
    fn new(with: &[(f64, f64)]) -> GammaGammaData {
        let mut xs: Vec<(f64, f64)> = Vec::new();
        let mut sorted: Vec<f64> = with.iter().map(|(x, _)| *x).collect();
        sorted.sort_by(f64::total_cmp);
        for x in sorted {
            match xs.last_mut() {
                Some((last, n)) if *last == x => *n += 1.0,
                _ => xs.push((x, 1.0)),
            }
        }
        GammaGammaData {
            xs,
            rows: with.iter().map(|(x, z)| (*x, x * z)).collect(),
            sum_x_ln_z: with.iter().map(|(x, z)| x * z.ln()).sum(),
            sum_ln_z: with.iter().map(|(_, z)| z.ln()).sum(),
            sum_x_ln_x: with.iter().map(|(x, _)| x * x.ln()).sum(),
        }
    }

    /// The sum of [`GammaGamma::log_likelihood`] over the customers.
    fn log_likelihood(&self, m: &GammaGamma) -> f64 {
        let GammaGamma { p, q, gamma } = *m;
        let n: f64 = self.xs.iter().map(|(_, n)| n).sum();
        let mut total = n * (q * gamma.ln() - ln_gamma(q));
        for &(x, count) in &self.xs {
            total += count * (ln_gamma(p * x + q) - ln_gamma(p * x));
        }
        total += p * self.sum_x_ln_z - self.sum_ln_z + p * self.sum_x_ln_x;
        for &(x, xz) in &self.rows {
            total -= (p * x + q) * (xz + gamma).ln();
        }
        total
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

    /// Fits by maximum likelihood: Nelder–Mead on the logarithms of the parameters.
    pub fn fit(customers: &[Summary]) -> (ParetoNbd, f64) {
        let model = |p: &[f64]| ParetoNbd {
            r: p[0].exp(),
            alpha: p[1].exp(),
            s: p[2].exp(),
            beta: p[3].exp(),
        };
        let nll = |p: &[f64]| to_minimise(model(p).total_log_likelihood(customers));
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

/// A customer's lifetime figures under fitted models.
#[derive(Debug, Clone, PartialEq)]
pub struct Valued {
    pub customer: String,
    pub summary: Summary,
    pub monetary: f64,
    pub p_alive: f64,
    /// Over the valuation's horizon.
    pub expected_purchases: f64,
    /// Without a spend model: none.
    pub expected_spend: Option<f64>,
    pub clv: Option<f64>,
}

/// BG/NBD (and Gamma-Gamma, when at least three customers bought again for an amount)
/// fitted on these customers, and each customer valued.
#[derive(Debug, Clone, PartialEq)]
pub struct Valuation {
    pub bg_nbd: BgNbd,
    pub log_likelihood: f64,
    /// The spend model and its log-likelihood.
    pub gamma_gamma: Option<(GammaGamma, f64)>,
    pub customers: Vec<Valued>,
}

/// Fits the models on `customers` (in weeks) and values each: P(alive), expected purchases
/// over `horizon` weeks, expected spend, and `months` of value discounted at `monthly_rate`
/// (`lifetimes`' month of 4.345 weeks). `None` when no customer bought again or the fit does
/// not converge: there is nothing to value with.
pub fn value_customers(
    customers: &[CustomerSummary],
    horizon: f64,
    months: u32,
    monthly_rate: f64,
) -> Option<Valuation> {
    if !customers.iter().any(|c| c.summary.x > 0.0) {
        return None;
    }
    let summaries: Vec<Summary> = customers.iter().map(|c| c.summary).collect();
    let (m, ll) = BgNbd::fit(&summaries);
    if ![m.r, m.alpha, m.a, m.b, ll].iter().all(|v| v.is_finite()) {
        return None;
    }
    let spenders: Vec<(f64, f64)> = customers
        .iter()
        .map(|c| (c.summary.x, c.monetary))
        .filter(|(x, v)| *x > 0.0 && *v > 0.0)
        .collect();
    let spend = (spenders.len() >= 3)
        .then(|| GammaGamma::fit(&spenders))
        .filter(|(g, ll)| [g.p, g.q, g.gamma, *ll].iter().all(|v| v.is_finite()));
    let valued = customers
        .iter()
        .map(|c| {
            let s = &c.summary;
            let expected_spend = spend
                .as_ref()
                .map(|(g, _)| g.expected_spend(s.x, c.monetary));
            Valued {
                customer: c.customer.clone(),
                summary: *s,
                monetary: c.monetary,
                p_alive: m.p_alive(s),
                expected_purchases: m.expected_purchases(s, horizon),
                expected_spend,
                clv: expected_spend.map(|e| {
                    discounted_value(
                        &|t| m.expected_purchases(s, t),
                        e,
                        months,
                        4.345,
                        monthly_rate,
                    )
                }),
            }
        })
        .collect();
    Some(Valuation {
        bg_nbd: m,
        log_likelihood: ll,
        gamma_gamma: spend,
        customers: valued,
    })
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

/// A log-likelihood as a minimiser takes it: negated, and infinite where it is not finite
/// (parameters the data cannot have).
fn to_minimise(ll: f64) -> f64 {
    if ll.is_finite() {
        -ll
    } else {
        f64::INFINITY
    }
}

/// A function's value and gradient at a point.
pub type ValueAndGradient<'a> = dyn Fn(&[f64]) -> (f64, Vec<f64>) + 'a;

/// Minimises `f` (its value and gradient) from `start` by BFGS with a backtracking line
/// search, until the gradient vanishes (relative to the value) or a step no longer lowers it.
/// `None` when the value or gradient stops being finite on the way, or it does not converge.
pub fn bfgs(f: &ValueAndGradient<'_>, start: &[f64]) -> Option<Vec<f64>> {
    let n = start.len();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let finite = |v: f64, g: &[f64]| v.is_finite() && g.iter().all(|x| x.is_finite());
    let mut x = start.to_vec();
    let (mut fx, mut g) = f(&x);
    if !finite(fx, &g) {
        return None;
    }
    // The inverse Hessian's estimate, row by row.
    let mut h = vec![vec![0.0; n]; n];
    (0..n).for_each(|i| h[i][i] = 1.0);
    let mut first = true;
    for _ in 0..1_000 {
        let scale = fx.abs().max(1.0);
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= 1e-9 * scale {
            return Some(x);
        }
        let mut p: Vec<f64> = (0..n).map(|i| -dot(&h[i], &g)).collect();
        let mut slope = dot(&g, &p);
        if slope >= 0.0 {
            // Not a descent direction: start the estimate again.
            (0..n).for_each(|i| (0..n).for_each(|j| h[i][j] = if i == j { 1.0 } else { 0.0 }));
            p = g.iter().map(|v| -v).collect();
            slope = dot(&g, &p);
        }
        let mut t = 1.0;
        let (x_new, f_new, g_new) = loop {
            let candidate: Vec<f64> = x.iter().zip(&p).map(|(a, d)| a + t * d).collect();
            let (v, gv) = f(&candidate);
            if finite(v, &gv) && v <= fx + 1e-4 * t * slope {
                break (candidate, v, gv);
            }
            t *= 0.5;
            if t < 1e-20 {
                // No step lowers it: as low as this precision goes.
                return Some(x);
            }
        };
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-300 {
            if first {
                let c = sy / dot(&y, &y);
                (0..n).for_each(|i| h[i][i] = c);
                first = false;
            }
            // H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ.
            let rho = 1.0 / sy;
            let hy: Vec<f64> = (0..n).map(|i| dot(&h[i], &y)).collect();
            let yhy = dot(&y, &hy);
            for i in 0..n {
                for j in 0..n {
                    h[i][j] += -rho * (hy[i] * s[j] + s[i] * hy[j])
                        + (rho * rho * yhy + rho) * s[i] * s[j];
                }
            }
        }
        let settled = (fx - f_new).abs() <= 1e-15 * scale;
        x = x_new;
        fx = f_new;
        g = g_new;
        if settled && g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= 1e-6 * scale {
            return Some(x);
        }
    }
    None
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
        if improved.abs() <= 1e-10 * best_value.abs().max(1.0) {
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
        if spread.abs() <= 1e-11 * simplex[0].1.abs().max(1.0) && size <= 1e-7 {
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
    fn the_fits_prepared_likelihoods_equal_the_customers_sums() {
        let customers: Vec<Summary> = (0..300)
            .map(|i| {
                let x = (i * 7 % 11) as f64;
                let t = 20.0 + (i % 13) as f64;
                Summary {
                    x,
                    t_x: if x > 0.0 {
                        t * ((i % 10) as f64 + 0.5) / 11.0
                    } else {
                        0.0
                    },
                    t,
                }
            })
            .collect();
        let data = BgNbdData::new(&customers).expect("whole repeat counts");
        let spenders: Vec<(f64, f64)> = customers
            .iter()
            .filter(|c| c.x > 0.0)
            .map(|c| (c.x, 5.0 + c.t_x))
            .collect();
        let gg_data = GammaGammaData::new(&spenders);
        for m in [
            PAPER,
            BgNbd {
                r: 1.7,
                alpha: 0.3,
                a: 2.2,
                b: 0.9,
            },
        ] {
            let slow = m.total_log_likelihood(&customers);
            let (fast, grad) = data.log_likelihood(&m);
            assert!((fast / slow - 1.0).abs() < 1e-12, "{fast} against {slow}");
            // The gradient against central differences.
            let params = [m.r, m.alpha, m.a, m.b];
            for (k, g) in grad.iter().enumerate() {
                let h = 1e-6 * params[k];
                let at = |d: f64| {
                    let mut p = params;
                    p[k] += d;
                    BgNbd {
                        r: p[0],
                        alpha: p[1],
                        a: p[2],
                        b: p[3],
                    }
                    .total_log_likelihood(&customers)
                };
                let numeric = (at(h) - at(-h)) / (2.0 * h);
                assert!(
                    (g - numeric).abs() <= 1e-5 * numeric.abs().max(1.0),
                    "d/d{k}: {g} against {numeric}"
                );
            }
        }
        for g in [
            GammaGamma {
                p: 6.25,
                q: 3.74,
                gamma: 15.44,
            },
            GammaGamma {
                p: 0.7,
                q: 9.0,
                gamma: 2.0,
            },
        ] {
            let slow: f64 = spenders.iter().map(|(x, z)| g.log_likelihood(*x, *z)).sum();
            let fast = gg_data.log_likelihood(&g);
            assert!((fast / slow - 1.0).abs() < 1e-12, "{fast} against {slow}");
        }
        // A repeat count that is not whole is read customer by customer.
        assert!(BgNbdData::new(&[Summary {
            x: 1.5,
            t_x: 1.0,
            t: 2.0
        }])
        .is_none());
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
