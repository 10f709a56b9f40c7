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
    pub http: Http,
    pub storage: Storage,
    pub ingest: Ingest,
    pub bootstrap: Bootstrap,
    pub log: Log,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    pub host: String,
    pub port: u16,
    /// Tracking requests per second per workspace; 0 = no limit.
    pub rate_limit_per_second: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// `full` (fsync every commit; survives power loss) or `normal` (survives a crash of Parcours).
    pub durability: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ingest {
    pub dedup_window_days: u32,
    /// Run the unify processor on this node (turn off for an ingest-only node).
    pub unify: bool,
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
            http: Http::default(),
            storage: Storage::default(),
            ingest: Ingest::default(),
            bootstrap: Bootstrap::default(),
            log: Log::default(),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8750,
            rate_limit_per_second: 0,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            durability: "full".into(),
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
        if !["full", "normal"].contains(&config.storage.durability.as_str()) {
            return Err(format!(
                "storage.durability must be `full` or `normal`, not `{}`",
                config.storage.durability
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's test jail returns its own error type
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "parcours.toml",
                "data_dir = \"/from/file\"\n[http]\nport = 9000\nhost = \"0.0.0.0\"",
            )?;
            jail.set_env("PARCOURS__HTTP__PORT", "9100");
            jail.set_env("PARCOURS__BOOTSTRAP__ADMIN_TOKEN", "pat_env");
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
            assert_eq!(c.bootstrap.admin_token.as_deref(), Some("pat_env"));
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
            jail.create_file("parcours.toml", "[http]\nprot = 1")?;
            assert!(Config::load(None, &Overrides::default())
                .unwrap_err()
                .contains("prot"));
            Ok(())
        });
    }
}
