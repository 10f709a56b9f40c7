//! Configuration, layered: defaults → `parcours.toml` → `PARCOURS__SECTION__KEY` env → flags.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded store lives.
    pub data_dir: PathBuf,
    /// A `postgres://` URL: store everything in PostgreSQL (several nodes can share it)
    /// instead of the embedded store in `data_dir`.
    pub database: Option<String>,
    pub http: Http,
    pub cluster: Cluster,
    pub storage: Storage,
    pub ingest: Ingest,
    pub bootstrap: Bootstrap,
    pub log: Log,
    pub destinations: Destinations,
    pub health: Health,
    pub metrics: Metrics,
    pub channels: Channels,
    pub security: Security,
}

/// How secrets are kept.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Security {
    /// Base64 of 32 random bytes (`head -c 32 /dev/urandom | base64`): the secrets Parcours
    /// must keep readable (destinations' signing secrets, webhook sources' platform secrets,
    /// the preference links' secret) are sealed with it in storage. Every node of a cluster
    /// needs the same key; a secret sealed with it cannot be read without it.
    pub secrets_key: Option<String>,
    /// Keys being rotated out (same form): secrets sealed with them still open, and
    /// `parcours secrets reseal` seals them again with `secrets_key`.
    pub previous_secrets_keys: Vec<String>,
}

/// A secrets key (32 bytes).
pub type SecretsKey = [u8; 32];

impl Security {
    /// The keys a sealed value may open with: the current one first, then the previous ones.
    pub fn keys(&self) -> Result<(Option<SecretsKey>, Vec<SecretsKey>), String> {
        let current = self
            .secrets_key
            .as_deref()
            .map(parcours_core::sealed::parse_key)
            .transpose()?;
        let previous = self
            .previous_secrets_keys
            .iter()
            .map(|k| {
                parcours_core::sealed::parse_key(k)
                    .map_err(|e| e.replace("secrets_key", "previous_secrets_keys"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if current.is_none() && !previous.is_empty() {
            return Err(
                "security.previous_secrets_keys is set but security.secrets_key is not: a rotation needs the new key"
                    .into(),
            );
        }
        Ok((current, previous))
    }
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("secrets_key", &self.secrets_key.as_ref().map(|_| "(set)"))
            .field("previous_secrets_keys", &self.previous_secrets_keys.len())
            .finish()
    }
}

/// How journeys' messages are sent. A channel without a provider sends to the capture
/// channel (kept as the customer would see them, sent to no one), and says so at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Channels {
    /// The address customers reach this node at (`https://parcours.shop.example`): the
    /// one-click unsubscribe links in emails point there.
    pub public_url: Option<String>,
    /// How long a node holds the messages it is sending: one that dies while sending holds
    /// them this long at most before another sends them (under the same keys).
    pub lease_ms: u64,
    pub email: Email,
    pub sms: Provider,
    pub push: Provider,
    pub webhook: WebhookChannel,
}

impl Default for Channels {
    fn default() -> Self {
        Self {
            public_url: None,
            lease_ms: 60_000,
            email: Email::default(),
            sms: Provider::default(),
            push: Provider::default(),
            webhook: WebhookChannel::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Email {
    /// `smtp://host:port` (`smtps://` for TLS, `?tls=required` for STARTTLS, a user and
    /// password before the host).
    pub smtp_url: Option<String>,
    /// The sender, `Shop <news@shop.example>`.
    pub from: Option<String>,
    /// Messages per second at most (0: no limit), for the whole cluster.
    pub rate_per_second: u32,
}

/// Journeys' webhook steps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookChannel {
    /// The Standard Webhooks signing secret of their calls: `whsec_` and the base64 of 24 to
    /// 64 random bytes (receivers verify with it). Without it, webhook steps' calls fail with
    /// that reason.
    pub secret: Option<String>,
}

/// An HTTP provider for SMS or push, with Twilio's request shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Provider {
    /// The provider's messages endpoint (Twilio:
    /// `https://api.twilio.com/2010-04-01/Accounts/AC…/Messages.json`).
    pub url: Option<String>,
    /// HTTP Basic credentials (Twilio: the account SID and the auth token).
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender: a number in E.164, a messaging service, an app id.
    pub from: Option<String>,
    /// Messages per second at most (0: no limit), for the whole cluster.
    pub rate_per_second: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    pub host: String,
    pub port: u16,
    /// Tracking requests per second per workspace; 0 = no limit.
    pub rate_limit_per_second: u32,
    /// Tracking requests per second per source write key; 0 = no limit.
    pub key_rate_limit_per_second: u32,
    /// Admin API requests per second per token; 0 = no limit.
    pub token_rate_limit_per_second: u32,
    /// A client has this long to send a request's headers (and an idle keep-alive connection
    /// is closed after it).
    pub header_timeout_ms: u64,
    /// A client has this long to send a request's body.
    pub body_timeout_ms: u64,
    /// Open connections one client address may hold; more are refused.
    pub max_connections_per_ip: usize,
}

/// When `/readyz` says a node is not ready because of its processors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Health {
    /// A processor that has failed without a success for this many seconds.
    pub failing_after_secs: u64,
    /// A processor this many events behind the log is reported `lagging`; 0 turns it off.
    pub max_lag_events: i64,
    /// Whether `/readyz` fails while a processor is lagging (off by default: the lag is the
    /// whole cluster's, and ingest does not need the processors).
    pub unready_when_lagging: bool,
}

impl Default for Health {
    fn default() -> Self {
        let api = parcours_api::ApiConfig::default();
        Self {
            failing_after_secs: api.failing_after.as_secs(),
            max_lag_events: api.max_lag_events,
            unready_when_lagging: api.unready_when_lagging,
        }
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// A bearer token that reads `/metrics` (an instance admin token does too).
    pub token: Option<String>,
    /// Whether `/metrics` needs a token; by default it does when `http.host` is not a
    /// loopback address.
    pub require_token: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// `full` (fsync every commit; survives power loss) or `normal` (survives a crash of Parcours).
    pub durability: String,
    /// Drop events received more than this many days ago (whole days); 0 keeps them forever.
    pub retention_days: u32,
}

/// How the nodes sharing a PostgreSQL database split the work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cluster {
    /// Unique per node; default: host name, port and process id.
    pub node_id: Option<String>,
    /// A dead node's buckets are taken over within this many milliseconds.
    pub lease_timeout_ms: u64,
    /// Events per unify transaction on PostgreSQL (short, so leases move quickly).
    pub unify_batch: usize,
    /// Database connections per node.
    pub max_connections: u32,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            node_id: None,
            lease_timeout_ms: 10_000,
            unify_batch: 1_000,
            max_connections: 16,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ingest {
    pub dedup_window_days: u32,
    /// Run the unify processor on this node (turn off for an ingest-only node).
    pub unify: bool,
}

/// How audience destinations (webhooks) are delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Destinations {
    /// Changes per request.
    pub batch: usize,
    /// A receiver that has not answered within this has failed the attempt.
    pub timeout_ms: u64,
    /// First retry delay; each next one doubles, up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How often an idle destination looks for new changes.
    pub poll_ms: u64,
    /// How long a node holds a request it is sending (extended while it waits); a node
    /// that dies holds it this long at most.
    pub lease_ms: u64,
    /// Attempts before a request is given up (dead in the delivery log, can be replayed).
    pub max_attempts: u32,
    /// Whether destinations may send to loopback, private, link-local and other non-public
    /// addresses (off: a destination URL could otherwise reach internal services).
    pub allow_private_addresses: bool,
}

impl Default for Destinations {
    fn default() -> Self {
        let d = parcours_engine::destinations::SyncConfig::default();
        Self {
            batch: d.batch,
            timeout_ms: d.timeout.as_millis() as u64,
            retry_base_ms: d.retry_base.as_millis() as u64,
            retry_max_ms: d.retry_max.as_millis() as u64,
            poll_ms: d.poll.as_millis() as u64,
            lease_ms: d.lease.as_millis() as u64,
            max_attempts: d.max_attempts,
            allow_private_addresses: d.allow_private_addresses,
        }
    }
}

impl Destinations {
    pub fn sync(&self) -> parcours_engine::destinations::SyncConfig {
        use std::time::Duration;
        parcours_engine::destinations::SyncConfig {
            batch: self.batch.max(1),
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            retry_base: Duration::from_millis(self.retry_base_ms.max(1)),
            retry_max: Duration::from_millis(self.retry_max_ms.max(self.retry_base_ms).max(1)),
            poll: Duration::from_millis(self.poll_ms.max(1)),
            lease: Duration::from_millis(self.lease_ms.max(100)),
            max_attempts: self.max_attempts.max(1),
            allow_private_addresses: self.allow_private_addresses,
        }
    }
}

/// Secrets of the default workspace for automated deployments (used on first start only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bootstrap {
    pub admin_token: Option<String>,
    pub write_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `text` or `json`.
    pub format: String,
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./parcours-data"),
            database: None,
            http: Http::default(),
            cluster: Cluster::default(),
            storage: Storage::default(),
            ingest: Ingest::default(),
            bootstrap: Bootstrap::default(),
            log: Log::default(),
            destinations: Destinations::default(),
            health: Health::default(),
            metrics: Metrics::default(),
            channels: Channels::default(),
            security: Security::default(),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8750,
            rate_limit_per_second: 0,
            key_rate_limit_per_second: 0,
            token_rate_limit_per_second: 0,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_connections_per_ip: 256,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            durability: "full".into(),
            retention_days: 0,
        }
    }
}

impl Default for Ingest {
    fn default() -> Self {
        Self {
            dedup_window_days: 30,
            unify: true,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Values given on the command line (they win over everything else).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOverrides>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct HttpOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Config {
    /// Loads the layers. `file` is `parcours.toml` in the working directory unless given.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, String> {
        let path = file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("parcours.toml"));
        if file.is_some() && !path.exists() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&path))
            .merge(Env::prefixed("PARCOURS__").split("__"))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| format!("invalid configuration: {e}"))?;
        let mut config = config;
        config.open_sealed_values()?;
        if !["full", "normal"].contains(&config.storage.durability.as_str()) {
            return Err(format!(
                "storage.durability must be `full` or `normal`, not `{}`",
                config.storage.durability
            ));
        }
        if let Some(url) = &config.database {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(format!(
                    "database must be a postgres:// URL (leave it unset for the embedded store), not `{}`",
                    redact(url)
                ));
            }
        }
        if config.cluster.lease_timeout_ms < 1_000 {
            return Err("cluster.lease_timeout_ms must be at least 1000".into());
        }
        if config.cluster.unify_batch == 0 {
            return Err("cluster.unify_batch must be at least 1".into());
        }
        for (key, value) in [
            ("bootstrap.admin_token", &config.bootstrap.admin_token),
            ("bootstrap.write_key", &config.bootstrap.write_key),
        ] {
            if let Some(v) = value {
                check_secret(key, v)?;
            }
        }
        if let Some(url) = &config.channels.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains(' ') {
                return Err(format!(
                    "channels.public_url is the address customers reach this node at, an http:// or https:// URL, not `{url}`"
                ));
            }
        }
        if !["text", "json"].contains(&config.log.format.as_str()) {
            return Err(format!(
                "log.format must be `text` or `json`, not `{}`",
                config.log.format
            ));
        }
        Ok(config)
    }

    /// Opens the credentials given sealed (`enc:v1:…`, from `parcours secrets seal`) with the
    /// configured keys, so that the configuration file need not hold them as they are.
    fn open_sealed_values(&mut self) -> Result<(), String> {
        let (current, previous) = self.security.keys()?;
        let keys: Vec<[u8; 32]> = current.into_iter().chain(previous).collect();
        let c = &mut self.channels;
        for (name, value) in [
            ("database", &mut self.database),
            ("channels.email.smtp_url", &mut c.email.smtp_url),
            ("channels.sms.username", &mut c.sms.username),
            ("channels.sms.password", &mut c.sms.password),
            ("channels.push.username", &mut c.push.username),
            ("channels.push.password", &mut c.push.password),
            ("channels.webhook.secret", &mut c.webhook.secret),
            ("bootstrap.admin_token", &mut self.bootstrap.admin_token),
            ("bootstrap.write_key", &mut self.bootstrap.write_key),
            ("metrics.token", &mut self.metrics.token),
        ] {
            if let Some(v) = value {
                *v = parcours_core::sealed::open_with_any(&keys, v)
                    .map_err(|e| format!("{name}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The PostgreSQL URL, if this node uses PostgreSQL.
    pub fn postgres(&self) -> Option<&str> {
        self.database.as_deref().filter(|u| !u.is_empty())
    }

    /// Whether `/metrics` needs a token: as configured, else when the node listens beyond
    /// loopback.
    pub fn metrics_require_token(&self) -> bool {
        self.metrics.require_token.unwrap_or_else(|| {
            let host = self.http.host.trim_matches(['[', ']']);
            !(host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback()))
        })
    }

    /// Where the data lives, for messages.
    pub fn location(&self) -> String {
        match self.postgres() {
            Some(url) => format!("PostgreSQL {}", redact(url)),
            None => format!("{}", self.data_dir.display()),
        }
    }
}

/// The shortest secret accepted from the configuration.
pub const MIN_SECRET_CHARS: usize = 24;

/// Refuses a secret copied from an example (`wk_…`, `<token>`, `changeme`) or too short to be
/// safe: anyone who read the same documentation would know it.
fn check_secret(key: &str, value: &str) -> Result<(), String> {
    let lower = value.to_ascii_lowercase();
    let placeholder = [
        "…",
        "...",
        "<",
        ">",
        "changeme",
        "change_me",
        "example",
        "placeholder",
        "xxxx",
        "secret",
    ]
    .iter()
    .any(|p| lower.contains(p));
    if placeholder {
        return Err(format!(
            "{key} looks like a placeholder from the documentation; give a random \
             secret of at least {MIN_SECRET_CHARS} characters (`openssl rand -hex 20`), or leave \
             it out and Parcours makes one"
        ));
    }
    if value.chars().count() < MIN_SECRET_CHARS || value.chars().any(char::is_whitespace) {
        return Err(format!(
            "{key} must be at least {MIN_SECRET_CHARS} characters without spaces \
             (`openssl rand -hex 20`); it has {}",
            value.chars().count()
        ));
    }
    Ok(())
}

/// A database URL without its password.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's test jail returns its own error type
mod tests {
    use super::*;

    /// Credentials may be given sealed with the secrets key (or a previous one): the node
    /// reads them opened; without the key, or with another, it refuses to start and says
    /// which setting.
    #[test]
    fn sealed_credentials_open_with_the_configured_keys() {
        use base64::Engine as _;
        let b64 = |k: [u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let smtp = parcours_core::sealed::seal_with(&new, "smtp://shop:hunter2@mail.example");
        let sms = parcours_core::sealed::seal_with(&old, "twilio-auth-token");
        let file = format!(
            "[channels.email]\nsmtp_url = \"{smtp}\"\n[channels.sms]\npassword = \"{sms}\""
        );
        figment::Jail::expect_with(|jail| {
            jail.create_file("parcours.toml", &file)?;
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.starts_with("channels.email.smtp_url:"), "{err}");
            assert!(err.contains("no key"), "{err}");
            jail.set_env("PARCOURS__SECURITY__SECRETS_KEY", b64(new));
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.starts_with("channels.sms.password:"), "{err}");
            jail.set_env(
                "PARCOURS__SECURITY__PREVIOUS_SECRETS_KEYS",
                format!("[\"{}\"]", b64(old)),
            );
            let c = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(
                c.channels.email.smtp_url.as_deref(),
                Some("smtp://shop:hunter2@mail.example")
            );
            assert_eq!(
                c.channels.sms.password.as_deref(),
                Some("twilio-auth-token")
            );
            jail.set_env("PARCOURS__SECURITY__SECRETS_KEY", b64([3; 32]));
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.contains("does not open"), "{err}");
            jail.set_env("PARCOURS__SECURITY__SECRETS_KEY", "");
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.contains("32 bytes"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "parcours.toml",
                "data_dir = \"/from/file\"\n[http]\nport = 9000\nhost = \"0.0.0.0\"",
            )?;
            jail.set_env("PARCOURS__HTTP__PORT", "9100");
            jail.set_env(
                "PARCOURS__BOOTSTRAP__ADMIN_TOKEN",
                "pat_from_env_0123456789abcdef",
            );
            let overrides = Overrides {
                http: Some(HttpOverrides {
                    port: Some(9200),
                    host: None,
                }),
                ..Default::default()
            };
            let c = Config::load(None, &overrides).unwrap();
            assert_eq!(c.data_dir, PathBuf::from("/from/file"));
            assert_eq!(c.http.host, "0.0.0.0");
            assert_eq!(c.http.port, 9200, "flags win over env, env over file");
            assert_eq!(
                c.bootstrap.admin_token.as_deref(),
                Some("pat_from_env_0123456789abcdef")
            );
            let c = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(c.http.port, 9100);
            Ok(())
        });
    }

    #[test]
    fn bad_configuration_is_refused_with_a_reason() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("parcours.toml", "[storage]\ndurability = \"sometimes\"")?;
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.contains("durability"), "{err}");
            jail.create_file("parcours.toml", "database = \"mysql://x\"")?;
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.contains("postgres://"), "{err}");
            for placeholder in ["wk_…", "pat_...", "<admin token>", "short_key"] {
                jail.create_file(
                    "parcours.toml",
                    &format!("[bootstrap]\nwrite_key = \"{placeholder}\""),
                )?;
                let err = Config::load(None, &Overrides::default()).unwrap_err();
                assert!(err.contains("bootstrap.write_key"), "{placeholder}: {err}");
            }
            jail.create_file("parcours.toml", "[http]\nprot = 1")?;
            assert!(Config::load(None, &Overrides::default())
                .unwrap_err()
                .contains("prot"));
            jail.create_file(
                "parcours.toml",
                "[channels]\npublic_url = \"parcours.shop.example\"",
            )?;
            let err = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(err.contains("channels.public_url"), "{err}");
            Ok(())
        });
    }

    /// The configuration file of docs/quickstart.md loads as written, and with its channel
    /// examples filled in.
    #[test]
    fn the_documented_file_loads() {
        let doc = include_str!("../../../docs/quickstart.md");
        let start = doc.find("```toml\n").expect("a toml block") + 8;
        let block = &doc[start..start + doc[start..].find("```").unwrap()];
        let filled: String = block
            .lines()
            .map(|l| {
                let channel_example = [
                    "public_url",
                    "smtp_url",
                    "from",
                    "url",
                    "username",
                    "password",
                ]
                .iter()
                .any(|k| l.starts_with(&format!("# {k} = ")));
                if channel_example {
                    l.trim_start_matches("# ").to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(filled.contains("\nusername = "), "{filled}");
        figment::Jail::expect_with(|jail| {
            jail.create_file("parcours.toml", block)?;
            Config::load(None, &Overrides::default()).unwrap();
            jail.create_file("parcours.toml", &filled)?;
            let c = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(c.channels.sms.username.as_deref(), Some("AC…"));
            assert!(c.channels.email.smtp_url.is_some());
            assert_eq!(
                c.channels.public_url.as_deref(),
                Some("https://parcours.shop.example")
            );
            Ok(())
        });
    }
}

#[cfg(test)]
mod metrics_tests {
    use super::Config;

    #[test]
    fn metrics_need_a_token_by_default_only_beyond_loopback() {
        let on = |host: &str| {
            let mut c = Config::default();
            c.http.host = host.into();
            c.metrics_require_token()
        };
        for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
            assert!(!on(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "10.0.0.4", "parcours.internal"] {
            assert!(on(host), "{host}");
        }
        let mut c = Config::default();
        c.http.host = "0.0.0.0".into();
        c.metrics.require_token = Some(false);
        assert!(!c.metrics_require_token(), "configured off");
    }
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            super::redact("postgres://app:s3cret@db:5432/parcours"),
            "postgres://app:***@db:5432/parcours"
        );
        assert_eq!(
            super::redact("postgres://db/parcours"),
            "postgres://db/parcours"
        );
    }
}
