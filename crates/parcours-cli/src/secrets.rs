//! `parcours secrets`: seal a credential for the configuration file, and seal the stored
//! secrets again under the current key (the second half of a key rotation).

use anyhow::{bail, Context};
use parcours_core::privacy::PREFERENCE_SECRET;
use parcours_core::sealed;
use parcours_store::{SecretHolder, Store};

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
/// sources' platform secrets, the preference links' secrets. Each is replaced alone, and only
/// if it is still what was read (a change made meanwhile is kept and reported).
pub fn reseal(config: &Config) -> anyhow::Result<Resealed> {
    if config.security.secrets_key.is_none() {
        bail!("set security.secrets_key to the key the secrets are to be sealed with, and security.previous_secrets_keys to the keys they were sealed with");
    }
    // The embedded store is held: no node of its own runs meanwhile.
    let _lock = hold_store(config, "sealing the secrets again")?;
    let store = open_store(config)?;
    reseal_store(store.as_ref())
}

fn reseal_store(store: &dyn Store) -> anyhow::Result<Resealed> {
    let mut done = Resealed::default();
    for secret in store.stored_secrets(&[PREFERENCE_SECRET])? {
        let what = match secret.holder {
            SecretHolder::Destination => format!("destination {}", secret.id),
            SecretHolder::Source => format!("webhook source {}", secret.id),
            SecretHolder::Setting => "preference secret".to_string(),
        };
        let place = format!("{what} of {}", secret.workspace_id);
        if secret.value.is_empty() {
            done.left
                .push(format!("{place}: its document does not read"));
            continue;
        }
        let plain = match sealed::open(&secret.value) {
            Ok(p) => p,
            Err(e) => {
                done.left.push(format!("{place}: {e}"));
                continue;
            }
        };
        // Sealing is deterministic: a secret already under the key is left as it is.
        let again = sealed::seal(&plain);
        if again != secret.value && !store.replace_stored_secret(&secret, &again)? {
            done.left.push(format!(
                "{place}: changed while it was sealed again; run again"
            ));
            continue;
        }
        match secret.holder {
            SecretHolder::Destination => done.destinations += 1,
            SecretHolder::Source => done.sources += 1,
            SecretHolder::Setting => done.preference_secrets += 1,
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
