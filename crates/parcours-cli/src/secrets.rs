//! `parcours secrets`: seal a credential for the configuration file, and seal the stored
//! secrets again under the current key (the second half of a key rotation).

use anyhow::{bail, Context};
use parcours_core::privacy::PREFERENCE_SECRET;
use parcours_core::sealed;
use parcours_core::time::Clock;
use parcours_engine::SystemClock;
use parcours_store::{DefinitionKind, Store};

use crate::config::Config;
use crate::node::{hold_store, open_store};

/// Seals `plain` with the configured key, for a credential of the configuration file.
pub fn seal(config: &Config, plain: &str) -> anyhow::Result<String> {
    let (current, _) = config.security.keys().map_err(|e| anyhow::anyhow!(e))?;
    let Some(key) = current else {
        bail!(
            "set security.secrets_key (or PARCOURS__SECURITY__SECRETS_KEY) to the key to seal with"
        );
    };
    let plain = plain.trim_end_matches(['\r', '\n']);
    if plain.is_empty() {
        bail!("nothing to seal: give the value on standard input");
    }
    if plain.starts_with(sealed::PREFIX) {
        bail!("this value is sealed already");
    }
    Ok(sealed::seal_with(&key, plain))
}

/// What a reseal did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    pub destinations: usize,
    pub sources: usize,
    pub preference_secrets: usize,
    /// Secrets left as they were (no configured key opens them, or they changed meanwhile).
    pub left: Vec<String>,
}

/// Seals every stored secret under the current key: destinations' signing secrets, webhook
/// sources' platform secrets, the preference links' secrets. Sealing is deterministic, so a
/// secret already sealed under the key is written back unchanged.
pub fn reseal(config: &Config) -> anyhow::Result<Resealed> {
    if config.security.secrets_key.is_none() {
        bail!("set security.secrets_key to the key the secrets are to be sealed with, and security.previous_secrets_keys to the keys they were sealed with");
    }
    // The embedded store: no node may change a definition at the same time.
    let _lock = hold_store(config, "sealing the secrets again")?;
    let store = open_store(config)?;
    reseal_store(store.as_ref())
}

fn reseal_store(store: &dyn Store) -> anyhow::Result<Resealed> {
    let mut done = Resealed::default();
    let now = SystemClock.now();
    for ws in store.workspaces()? {
        for d in store.definitions(Some(&ws.id))? {
            if d.kind != DefinitionKind::Destination {
                continue;
            }
            let Some(stored) = d.doc.get("secret").and_then(|s| s.as_str()) else {
                continue;
            };
            let plain = match sealed::open(stored) {
                Ok(p) => p,
                Err(e) => {
                    done.left
                        .push(format!("destination {} of {}: {e}", d.id, ws.id));
                    continue;
                }
            };
            // Written only if the definition did not change since it was read.
            let current = store
                .definitions(Some(&ws.id))?
                .into_iter()
                .find(|c| c.kind == d.kind && c.id == d.id);
            if current.as_ref().map(|c| c.version) != Some(d.version) {
                done.left.push(format!(
                    "destination {} of {}: changed while it was sealed again; run again",
                    d.id, ws.id
                ));
                continue;
            }
            let mut again = d.clone();
            again.doc["secret"] = sealed::seal(&plain).into();
            store.put_definition(&again)?;
            done.destinations += 1;
        }
        // A source whose document no key opens reads without its webhook (the store says so
        // in the log): it is left as it is.
        for source in store.sources(&ws.id)? {
            if source
                .webhook
                .as_ref()
                .is_some_and(|w| w.signature.is_some())
            {
                store.update_source(&source)?;
                done.sources += 1;
            }
        }
        if let Some(stored) = store.workspace_setting(&ws.id, PREFERENCE_SECRET)? {
            match sealed::open(&stored) {
                Ok(plain) => {
                    store.put_workspace_setting(
                        &ws.id,
                        PREFERENCE_SECRET,
                        &sealed::seal(&plain),
                        now,
                    )?;
                    done.preference_secrets += 1;
                }
                Err(e) => done
                    .left
                    .push(format!("preference secret of {}: {e}", ws.id)),
            }
        }
    }
    Ok(done)
}

/// `parcours secrets reseal`, with its report.
pub fn reseal_command(config: &Config) -> anyhow::Result<()> {
    let done = reseal(config).context("cannot seal the stored secrets again")?;
    eprintln!(
        "sealed under the current key: {} destination secrets, {} webhook source secrets, {} preference secrets",
        done.destinations, done.sources, done.preference_secrets
    );
    if !done.left.is_empty() {
        for u in &done.left {
            eprintln!("not sealed again: {u}");
        }
        bail!(
            "{} secrets were not sealed again; keep security.previous_secrets_keys until they are",
            done.left.len()
        );
    }
    eprintln!("every stored secret opens with security.secrets_key alone: security.previous_secrets_keys can be removed");
    Ok(())
}
