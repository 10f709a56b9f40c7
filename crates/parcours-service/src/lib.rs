//! Commands and queries with their role checks: what the admin API, the console and the CLI
//! call, so that none of them holds a domain rule of its own. No HTTP in it: callers translate
//! their requests into calls here and [`ServiceError`]s into their answers (each error has a
//! stable code).
//!
//! Everything here is synchronous and reads or writes the store: async callers run it on a
//! blocking thread.

pub mod commerce;
pub mod customers;
pub mod dashboard;
pub mod definitions;
pub mod deliveries;
pub mod identity;
pub mod journeys;
pub mod keys;
pub mod measure;
pub mod messages;
pub mod preferences;
pub mod privacy;
pub mod quarantine;
pub mod secrets;
pub mod sending;
pub mod workspaces;

use parcours_store::{Definition, DefinitionKind, Role, Store, StoreError};

/// Who asks: a workspace and a role (from an admin token, a console session, the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub workspace: String,
    pub role: Role,
    /// The instance admin token: it also creates workspaces.
    pub instance_admin: bool,
}

impl Actor {
    pub fn new(workspace: impl Into<String>, role: Role) -> Self {
        Self {
            workspace: workspace.into(),
            role,
            instance_admin: false,
        }
    }

    /// Admins and marketers change audiences, computed traits and destinations.
    pub fn require_editor(&self) -> Result<(), ServiceError> {
        if matches!(self.role, Role::Admin | Role::Marketer) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "this needs the admin or marketer role; the token has {}",
                self.role.as_str()
            )))
        }
    }

    /// Whether the role may read customers' personal data (emails, phones, names, their
    /// events, the messages sent to them): admins, marketers and agents; analysts and
    /// read-only tokens see counts, rates and ids only.
    pub fn may_read_personal_data(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Marketer | Role::Agent)
    }

    /// [`Actor::may_read_personal_data`], refused otherwise.
    pub fn require_personal_data(&self) -> Result<(), ServiceError> {
        if self.may_read_personal_data() {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "this shows customers' personal data (emails, phones, names, events, messages): it needs the admin, marketer or agent role; the token has {}",
                self.role.as_str()
            )))
        }
    }

    /// Admins change sources, tokens, identity rules and the quarantine.
    pub fn require_admin(&self) -> Result<(), ServiceError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "this needs the admin role; the token has {}",
                self.role.as_str()
            )))
        }
    }
}

/// Why a command or a query was refused.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The actor's role does not allow it (`forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing by that id in the actor's workspace (`not_found`).
    #[error("{0} not found")]
    NotFound(String),
    /// The request is not valid; `code` is the stable error code.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// A journey document that does not read: every problem with its line and column (the
    /// code is the first problem's).
    #[error("{}", journeys::describe(problems))]
    Document {
        problems: Vec<parcours_core::journey::Problem>,
    },
    /// It would overwrite something that exists (`code` says what).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request is valid but what it asks cannot be done (`code` says why).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// Some lines do not fit in the stock: nothing was reserved or moved
    /// (`insufficient_stock`, with every short line).
    #[error("{}", commerce::describe_shortages(shortages))]
    OutOfStock {
        shortages: Vec<parcours_core::commerce::inventory::Shortage>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }
}

/// A definition of the actor's workspace.
pub fn definition(
    store: &dyn Store,
    actor: &Actor,
    kind: DefinitionKind,
    id: &str,
) -> Result<Definition, ServiceError> {
    store
        .definitions(Some(&actor.workspace))?
        .into_iter()
        .find(|d| d.kind == kind && d.id == id)
        .ok_or_else(|| {
            let what = match kind {
                DefinitionKind::Audience => "audience",
                DefinitionKind::ComputedTrait => "computed trait",
                DefinitionKind::Destination => "destination",
            };
            ServiceError::NotFound(format!("{what} {id}"))
        })
}
